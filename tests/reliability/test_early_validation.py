"""Early validation: bad sizes, a base without weights and targets that match nothing fail
in the configuration check, before any model, dataset or DeepSpeed launcher is built.

The entry point is the real ``python -m llava_structlora.train`` main; the base loader is replaced
by a tripwire, so a test passes only if the error came before it: exit 2, the option named.
"""

from __future__ import annotations

import shutil

import pytest

from .conftest import record, write_json


@pytest.fixture()
def tripwire(monkeypatch):
    """Any attempt to load a model or processor fails the test."""
    import llava_structlora.modeling as modeling
    import llava_structlora.train.methods as methods

    def boom(*a, **k):
        raise AssertionError("a model or processor was built before the configuration was refused")

    monkeypatch.setattr(modeling, "load_base_model", boom)
    for name in ("load_processor", "build_model", "build_dataset"):
        if hasattr(methods, name):
            monkeypatch.setattr(methods, name, boom)


def _argv(tmp_path, base, *extra):
    data = write_json(tmp_path / "llava_train.json", [record("a", None, "what is it?", "a circle")])
    return [
        "--model_name_or_path",
        str(base),
        "--data_path",
        str(data),
        "--output_dir",
        str(tmp_path / "out"),
        "--report_to",
        "none",
        "--max_steps",
        "1",
        *extra,
    ]


@pytest.mark.parametrize(
    "flag,value,field",
    [
        ("--eval_batch_size", "0", "DataArguments.eval_batch_size=0"),
        ("--eval_batch_size", "-4", "DataArguments.eval_batch_size=-4"),
        ("--per_device_train_batch_size", "0", "TrainingArguments.per_device_train_batch_size=0"),
        ("--gradient_accumulation_steps", "0", "TrainingArguments.gradient_accumulation_steps=0"),
        ("--model_max_length", "0", "DataArguments.model_max_length=0"),
        ("--max_train_samples", "0", "DataArguments.max_train_samples=0"),
    ],
)
def test_zero_sizes_refused_before_anything_is_built(flag, value, field, tmp_path, tiny_base, tripwire, capsys):
    from llava_structlora.train.main import main

    assert main(_argv(tmp_path, tiny_base, flag, value)) == 2
    err = capsys.readouterr().err
    assert field in err and "must be a positive int" in err and "Traceback" not in err


@pytest.mark.parametrize("what", ["no_weights", "only_index_missing_shards_ok", "torn_config"])
def test_base_dir_problems_refused_before_build(what, tmp_path, tiny_base, tripwire, capsys):
    from llava_structlora.train.main import main

    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    for w in base.glob("*.safetensors"):
        w.unlink()
    if what == "only_index_missing_shards_ok":
        (base / "model.safetensors.index.json").write_text("{}")  # shards are checked by the loader itself
        assert main(_argv(tmp_path, base, "--targets", "nothing_matches_this")) == 2
        assert "targets='nothing_matches_this'" in capsys.readouterr().err
        return
    if what == "torn_config":
        (base / "model.safetensors").write_bytes(b"")
        (base / "config.json").write_text('{"model_type": "llava", "text_config": {')
    assert main(_argv(tmp_path, base)) == 2
    err = capsys.readouterr().err
    assert str(base) in err and "Traceback" not in err
    assert ("no weights" in err) if what == "no_weights" else ("config.json" in err)


@pytest.mark.parametrize("targets", ["nothing_matches_this", r"layers\.\d+\.mlp\.nonexistent_proj$", "q_proj_typo"])
def test_target_regex_matching_nothing_is_refused_before_build(targets, tmp_path, tiny_base, tripwire, capsys):
    from llava_structlora.train.main import main

    for method in ("structlora", "lora"):
        assert main(_argv(tmp_path, tiny_base, "--targets", targets, "--method", method)) == 2
        err = capsys.readouterr().err
        assert f"targets={targets!r}" in err and "matched no" in err and "module names look like" in err


@pytest.mark.parametrize("targets", [r"language_model.*self_attn\.q_proj$", r".*layers\.\d+\.self_attn\.(q|v)_proj$"])
def test_target_regex_that_matches_is_accepted(targets, tmp_path, tiny_base):
    """--targets' help says "a preset or one regex": a regex passes the whole configuration check."""
    from llava_structlora.train.cli import parse_args

    margs, *_ = parse_args(_argv(tmp_path, tiny_base, "--targets", targets), with_deepspeed=False)
    assert margs.targets == targets
