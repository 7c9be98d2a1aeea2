"""Config parsing/validation: YAML + CLI, paper defaults, clear errors before anything launches."""

from __future__ import annotations

import pytest

from llava_structlora.train.cli import parse_args
from llava_structlora.train.config import ConfigError
from tests.tiny_configs import tiny_vision_text


def _parse(*argv, **kw):
    return parse_args(["--output_dir", "/tmp/unused", *argv], check_paths=False, **kw)


def test_paper_defaults():
    m, d, s, t = _parse()
    assert (m.method, m.lora_r, m.lora_alpha, m.targets) == ("structlora", 8, 16.0, "qv")
    assert (t.learning_rate, t.weight_decay, t.adam_beta1, t.adam_beta2) == (2e-4, 0.01, 0.9, 0.999)
    assert t.warmup_steps == 0.06 and getattr(t.lr_scheduler_type, "value", t.lr_scheduler_type) == "cosine"
    assert t.report_to == ["tensorboard"]  # TensorBoard by default, W&B only if asked
    assert (s.filter, s.coordinator, s.gate) == ("ib", "coupling", "hard_concrete")  # coupling: docs/structlora.md


def test_yaml_then_cli_override(tmp_path):
    cfg = tmp_path / "r.yaml"
    cfg.write_text("method: lora\nlearning_rate: 1.0e-4\nlora_r: 4\ntune_mm_projector: true\n")
    m, _, _, t = _parse("--config", str(cfg), "--lora_r", "16")
    assert (m.method, m.lora_r, m.tune_mm_projector, t.learning_rate) == ("lora", 16, True, 1e-4)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--learning_rate", "nan"], "learning_rate=nan"),
        (["--learning_rate", "abc"], "learning_rate"),
        (["--lora_alpha", "inf"], "lora_alpha"),
        (["--method", "qlora"], "method='qlora'"),
        (["--lora_r", "0"], "lora_r=0"),
        (["--data_fraction", "1.5"], "data_fraction"),
        (["--filter", "magic"], "filter"),
        (["--coordinator", "gcn"], "coordinator"),
        (["--bogus", "1"], "unknown arguments"),
        (["--conv_template", "plain"], "vicuna_v1_nosys"),
    ],
)
def test_bad_values_name_the_field(argv, needle):
    with pytest.raises(ConfigError, match=None) as e:
        _parse(*argv)
    assert needle in str(e.value)


def test_bad_yaml_names_file_and_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("lerning_rate: 1e-4\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown option 'lerning_rate'"):
        _parse("--config", str(cfg))
    cfg.write_text("learning_rate: [1, 2\n")
    with pytest.raises(ConfigError, match="cannot read YAML"):
        _parse("--config", str(cfg))
    with pytest.raises(ConfigError, match="file not found"):
        _parse("--config", str(tmp_path / "missing.yaml"))


def test_paths_checked(tmp_path):
    with pytest.raises(ConfigError, match="model_name_or_path"):
        parse_args(["--output_dir", str(tmp_path)])
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="data_path=.*file not found"):
        parse_args(
            [
                "--output_dir",
                str(tmp_path),
                "--model_name_or_path",
                str(tmp_path / "m"),
                "--data_path",
                str(tmp_path / "nope.json"),
            ]
        )
    (tmp_path / "d.json").write_text("[]")
    (tmp_path / "z.json").write_text("{not json")
    with pytest.raises(ConfigError, match="deepspeed=.*not a readable JSON"):
        parse_args(
            [
                "--output_dir",
                str(tmp_path),
                "--model_name_or_path",
                str(tmp_path / "m"),
                "--data_path",
                str(tmp_path / "d.json"),
                "--deepspeed",
                str(tmp_path / "z.json"),
            ],
            with_deepspeed=False,
        )


def _meta_base(path):
    """A base dir whose config.json is a (tiny) Llava config plus a weights file: enough for the
    pre-build checks (weights present, targets matched on the meta device)."""
    from transformers import LlavaConfig

    vision, text = tiny_vision_text()
    path.mkdir()
    LlavaConfig(text_config=text, vision_config=vision, image_token_index=99).to_json_file(path / "config.json")
    (path / "model.safetensors").write_bytes(b"")
    return path


def test_zero3_accepts_adapters_and_refuses_full_before_launch(tmp_path):
    _meta_base(tmp_path / "m")
    (tmp_path / "d.json").write_text("[]")
    base = [
        "--output_dir",
        str(tmp_path),
        "--model_name_or_path",
        str(tmp_path / "m"),
        "--data_path",
        str(tmp_path / "d.json"),
        "--deepspeed",
        "zero_configs/zero3.json",
    ]
    parse_args(base, with_deepspeed=False)  # StructLoRA runs under ZeRO-3 (train/zero3.py)
    parse_args(base + ["--method", "lora"], with_deepspeed=False)
    with pytest.raises(ConfigError, match="method=full with ZeRO-3.*zero2"):
        parse_args(base + ["--method", "full"], with_deepspeed=False)


def test_conv_template_default_and_choice():
    assert _parse()[1].conv_template == "vicuna_v1_nosys"  # what the toy base is trained with
    assert _parse("--conv_template", "vicuna_v1")[1].conv_template == "vicuna_v1"


def _other_value(name: str, default):
    """A valid non-default value for StructLoRAConfig.<name> (the default itself when none is found)."""
    import dataclasses

    from llava_structlora.structlora import config as slc

    if isinstance(default, bool):
        candidates = [not default]
    elif isinstance(default, str):
        choices = [c for v in vars(slc).values() if isinstance(v, tuple) and default in v for c in v]
        candidates = [c for c in choices if c != default]
    elif isinstance(default, int):
        candidates = [default + 1, max(1, default - 1)]
    elif isinstance(default, float):
        candidates = [default * 0.5 if default else 0.125, default + 0.125]
    elif default is None:
        candidates = [2, 0.5, "x"]
    else:
        candidates = []
    for cand in candidates:
        try:
            slc.StructLoRAConfig(**{name: cand})
        except (ValueError, TypeError):
            continue
        return cand
    return default if default is not dataclasses.MISSING else None


def _fields():
    import dataclasses

    from llava_structlora.structlora.config import StructLoRAConfig

    return [f for f in dataclasses.fields(StructLoRAConfig) if f.init]


@pytest.mark.parametrize("f", _fields(), ids=lambda f: f.name)
def test_every_structlora_field_settable_from_yaml_and_cli(f, tmp_path):
    """Generated over dataclasses.fields(StructLoRAConfig): each knob reaches the built config both ways."""
    import dataclasses

    import yaml

    from llava_structlora.train.config import SHARED_KNOBS, build_structlora_config

    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    value = _other_value(f.name, default)
    if f.name == "targets":
        value = "qkv"
    option = SHARED_KNOBS.get(f.name, f.name)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({option: value}))
    for argv in (
        ["--config", str(recipe)],
        [f"--{option}", str(value).lower() if isinstance(value, bool) else str(value)],
    ):
        m, _, s, t = _parse(*argv)
        assert getattr(build_structlora_config(m, s, t.seed), f.name) == value, (f.name, argv)


def test_structlora_arguments_generated_not_mirrored():
    import dataclasses

    from llava_structlora.structlora.config import StructLoRAConfig
    from llava_structlora.train.config import SHARED_KNOBS, ModelArguments, StructLoRAArguments

    cli = {f.name: f for f in dataclasses.fields(StructLoRAArguments)}
    assert set(cli) == {f.name for f in dataclasses.fields(StructLoRAConfig)} - set(SHARED_KNOBS)
    assert all(f.metadata.get("help") for f in cli.values())
    sl = StructLoRAConfig()
    assert (ModelArguments().lora_r, ModelArguments().lora_alpha) == (sl.r, sl.alpha)  # defaults written once


def test_public_import_paths_kept_after_the_split():
    """cli.py and identity.py hold what config.py held; `train.config.<name>` still names the same objects."""
    from llava_structlora.train import cli, config, identity

    assert (config.parse_args, config.compose_argv) == (cli.parse_args, cli.compose_argv)
    assert (config.run_identity, config.to_jsonable) == (identity.run_identity, identity.to_jsonable)
    with pytest.raises(AttributeError):
        config.no_such_name  # noqa: B018
