"""The fault classes of issues #22 and #24 at the real entry points: exit 2, the file (and record) named,
no traceback; corrupted run state refused; a release that stock PEFT cannot load is never published.

Classes: adapter shapes that do not fit the base; a pickled adapter_model.bin; a .safetensors that is
not one (text, a pickle, truncated, garbled); a question record whose image has the wrong type; metric
ids that are not hashable; a truncated shard of a merged model; a garbled eval_key.json; a truncated
trainer_state.json; a checkpoint without optimizer.pt; an edited rank in adapter_config.json; lmms-eval
exporter inputs (truncated annotations, no answers, --limit 0 / negative).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from .conftest import write_json
from .killer import debris, fork_call
from .test_concurrency import _train_argv
from .test_interrupts import _merge_argv, eval_argv
from .test_untrusted_files import plant

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_prep"))
from official_fixtures import vqa_annotation, vqa_annotations, vqa_questions  # noqa: E402


def _clean(capfd, *needles: str) -> str:
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    for n in needles:
        assert n in err, f"{n!r} not in {err[-2000:]!r}"
    return err


def _entry(name: str):
    if name == "eval":
        from llava_structlora.evaluation.__main__ import main
    elif name == "merge":
        from llava_structlora.merge import main
    else:
        from llava_structlora.release import main
    return main


def _argv(name: str, adapter: Path, tmp_path: Path, base: Path, world: Path) -> list[str]:
    if name == "eval":
        return eval_argv(world, base, tmp_path / "eval", "--adapter", str(adapter))
    if name == "merge":
        return _merge_argv(adapter, tmp_path / "merged", base)
    return [str(adapter), str(tmp_path / "rel")]


@pytest.fixture()
def adapter(tmp_path, peft_adapter) -> Path:
    out = tmp_path / "adapter"
    shutil.copytree(peft_adapter, out)
    return out


# ----------------------------------------------------------------------------- adapter files
def test_adapter_whose_shapes_do_not_fit_the_base(adapter, tmp_path, tiny_base, eval_world, capfd):
    """An adapter of another model width: the evaluation names the file and the tensors (merge: every layer)."""
    from safetensors.torch import load_file, save_file

    path = adapter / "adapter_model.safetensors"
    tensors = load_file(str(path))
    save_file({k: v[:, : v.shape[1] // 2].contiguous() if "lora_A" in k else v for k, v in tensors.items()}, str(path))
    assert fork_call(_entry("eval"), _argv("eval", adapter, tmp_path, tiny_base, eval_world)) == 2
    _clean(capfd, str(path), "does not fit this base", "size mismatch for")
    assert fork_call(_entry("merge"), _argv("merge", adapter, tmp_path, tiny_base, eval_world)) == 2
    _clean(capfd, "refusing to merge", "lora_A: adapter shape")


@pytest.mark.parametrize("entry", ["eval", "merge", "release"])
def test_pickled_adapter_bin_is_refused_by_name(entry, adapter, tmp_path, tiny_base, eval_world, capfd):
    (adapter / "adapter_model.safetensors").unlink()
    marker = tmp_path / "pwned"
    plant(adapter / "adapter_model.bin", marker)
    assert fork_call(_entry(entry), _argv(entry, adapter, tmp_path, tiny_base, eval_world)) == 2
    _clean(capfd, str(adapter / "adapter_model.bin"), "refusing to load a pickled adapter", "can run code")
    assert not marker.exists()


NOT_SAFETENSORS = {
    "text": lambda data: b"this is not a tensor file\n",
    "pickle": lambda data: b"PK\x03\x04" + data[4:],
    "truncated": lambda data: data[: len(data) // 2],
    "garbled_header": lambda data: data[:8] + b"\xff" * 40 + data[48:],
    "empty": lambda data: b"",
}


@pytest.mark.parametrize("entry", ["eval", "merge", "release"])
@pytest.mark.parametrize("kind", sorted(NOT_SAFETENSORS))
def test_adapter_safetensors_that_is_not_one(kind, entry, adapter, tmp_path, tiny_base, eval_world, capfd):
    path = adapter / "adapter_model.safetensors"
    path.write_bytes(NOT_SAFETENSORS[kind](path.read_bytes()))
    assert fork_call(_entry(entry), _argv(entry, adapter, tmp_path, tiny_base, eval_world)) == 2
    _clean(capfd, str(path), "safetensors" if kind != "truncated" else "truncated")
    assert not (tmp_path / "merged").exists() and not (tmp_path / "rel").exists()


@pytest.mark.parametrize("entry", ["eval", "merge", "release"])
def test_edited_rank_in_adapter_config(entry, adapter, tmp_path, tiny_base, eval_world, capfd):
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["r"] = 8  # the tensors hold rank 4
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    assert fork_call(_entry(entry), _argv(entry, adapter, tmp_path, tiny_base, eval_world)) == 2
    _clean(capfd, str(adapter / "adapter_config.json"), "says rank 8", "holds rank 4")


def test_release_that_stock_peft_cannot_load_is_not_published(adapter, tmp_path, capfd):
    """A config PEFT cannot apply (target modules the base does not have): no release, so no SHA256SUMS."""
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["target_modules"] = ["no_such_proj"]
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    out = tmp_path / "rel"
    assert fork_call(_entry("release"), [str(adapter), str(out)]) == 2
    _clean(capfd, "refusing to publish a release that stock PEFT cannot load", "no_such_proj")
    assert not out.exists() and debris(tmp_path) == []


def test_release_is_loaded_with_stock_peft_before_publishing(adapter, tmp_path, tiny_base):
    from llava_structlora.release import verify_loads_with_peft
    from llava_structlora.utils.artifacts import tensor_shapes

    rel = tmp_path / "rel"
    assert _entry("release")([str(adapter), str(rel)]) == 0
    assert verify_loads_with_peft(rel, tiny_base) == len(tensor_shapes(rel / "adapter_model.safetensors")) > 0


# ----------------------------------------------------------------------------- merged model, evaluation inputs
@pytest.fixture(scope="module")
def sharded_merge(tmp_path_factory, peft_adapter, tiny_base) -> Path:
    from llava_structlora.merge import main

    out = tmp_path_factory.mktemp("sharded") / "merged"
    assert main([*_merge_argv(peft_adapter, out, tiny_base), "--max-shard-size", "100KB"]) == 0
    assert len(list(out.glob("model-*.safetensors"))) >= 2
    return out


@pytest.mark.parametrize("damage", ["truncated_shard", "missing_shard", "garbled_index"])
def test_merged_model_with_a_damaged_shard(damage, sharded_merge, tmp_path, eval_world, capfd):
    merged = tmp_path / "merged"
    shutil.copytree(sharded_merge, merged)
    shard = sorted(merged.glob("model-*.safetensors"))[-1]
    if damage == "truncated_shard":
        shard.write_bytes(shard.read_bytes()[:-1000])
    elif damage == "missing_shard":
        shard.unlink()
    else:
        shard = merged / "model.safetensors.index.json"
        shard.write_text(shard.read_text()[:40])
    assert fork_call(_entry("eval"), eval_argv(eval_world, merged, tmp_path / "eval")) == 2
    _clean(capfd, str(shard))


@pytest.mark.parametrize("image", [5, ["im0.png"], {"path": "im0.png"}])
def test_question_record_with_a_mistyped_image(image, tmp_path, eval_world, tiny_base, capfd):
    world = tmp_path / "world"
    shutil.copytree(eval_world, world)
    qfile = world / "gqa" / "testdev_questions.jsonl"
    lines = qfile.read_text().splitlines()
    lines[1] = json.dumps({"question_id": "q1", "image": image, "text": "what colour?"})
    qfile.write_text("\n".join(lines) + "\n")
    assert fork_call(_entry("eval"), eval_argv(world, tiny_base, tmp_path / "eval")) == 2
    _clean(capfd, f"{qfile}:2", "'image' must be a path string")


@pytest.mark.parametrize("content", ["", '{"task": "gqa", "split": ', "[1, 2]"])
def test_garbled_eval_key(content, tmp_path, eval_world, tiny_base, capfd):
    from llava_structlora.evaluation.__main__ import main

    out = tmp_path / "eval"
    assert main(eval_argv(eval_world, tiny_base, out)) == 0
    (out / "eval_key.json").write_text(content)
    capfd.readouterr()
    assert fork_call(main, eval_argv(eval_world, tiny_base, out)) == 2
    _clean(capfd, str(out / "eval_key.json"), "--overwrite")
    assert fork_call(main, eval_argv(eval_world, tiny_base, out, "--overwrite")) == 0


@pytest.mark.parametrize(
    "task,results,needle",
    [
        ("gqa", [{"questionId": ["q0"], "prediction": "red"}], "'questionId' must be a string or an integer"),
        ("gqa", [{"questionId": {"id": 1}, "prediction": "red"}], "'questionId' must be a string or an integer"),
        ("vqav2", [{"question_id": [1], "answer": "red"}], "'question_id' must be a string or an integer"),
        ("vqav2_annotations", [{"question_id": 1, "answer": "red"}], "'question_id' must be a string or an integer"),
    ],
)
def test_metrics_input_with_unhashable_ids(task, results, needle, tmp_path, capfd):
    from llava_structlora.metrics.__main__ import main

    r = write_json(tmp_path / "results.json", results)
    if task == "gqa":
        q = write_json(tmp_path / "q.json", {"q0": {"imageId": "x", "question": "?", "answer": "red"}})
        argv, named = ["gqa", "--questions", str(q), "--results", str(r)], r
    else:
        raw = tmp_path / "raw"
        q = vqa_questions(raw, "val2014", [(1, 1, "what?")])
        ann = vqa_annotation(1, 1, "red")
        if task == "vqav2_annotations":
            ann["question_id"] = [1]
        a = vqa_annotations(raw, "val2014", [ann])
        argv, named = ["vqav2", "--questions", str(q), "--annotations", str(a), "--results", str(r)], r
        named = a if task == "vqav2_annotations" else r
    assert main(argv) == 2
    _clean(capfd, str(named), needle)


# ----------------------------------------------------------------------------- corrupted run state
def _fake_checkpoint(out: Path, step: int = 2, **damage: bool) -> Path:
    from llava_structlora.train.checkpoints import mark_complete

    ckpt = out / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    state = json.dumps({"global_step": step, "log_history": []})
    (ckpt / "trainer_state.json").write_text(state[:15] if damage.get("truncated_state") else state)
    if not damage.get("no_optimizer"):
        torch.save({"state": {}}, ckpt / "optimizer.pt")
    torch.save({"last_epoch": step}, ckpt / "scheduler.pt")
    mark_complete(ckpt, step=step, world_size=1)
    return ckpt


@pytest.mark.parametrize("damage", ["truncated_state", "no_optimizer"])
def test_corrupted_checkpoint_is_refused_at_resume(damage, tmp_path, tiny_base, capfd):
    """RESUME=auto: a torn state or a missing optimizer in the newest checkpoint is named before any build."""
    from llava_structlora.train.main import main

    out = tmp_path / "run"
    ckpt = _fake_checkpoint(out, **{damage: True})
    assert fork_call(main, [*_train_argv(tmp_path, tiny_base, out), "--resume", "auto"]) == 2
    if damage == "truncated_state":
        _clean(capfd, str(ckpt / "trainer_state.json"), "not valid JSON")
    else:
        _clean(capfd, str(ckpt), "no optimizer.pt", "LLAVA_SL_RESUME_FRESH_OPTIMIZER=1", "RESUME=none")


def test_fresh_optimizer_only_by_explicit_opt_in(tmp_path, monkeypatch, caplog):
    from llava_structlora.train.checkpoints import resolve_resume
    from llava_structlora.utils.artifacts import ArtifactError

    ckpt = _fake_checkpoint(tmp_path, no_optimizer=True)
    with pytest.raises(ArtifactError, match="no optimizer.pt"):
        resolve_resume("auto", tmp_path)
    monkeypatch.setenv("LLAVA_SL_RESUME_FRESH_OPTIMIZER", "1")
    assert resolve_resume("auto", tmp_path) == str(ckpt)
    assert "WITHOUT optimizer.pt" in caplog.text  # logged, never silent


# ----------------------------------------------------------------------------- lmms-eval exporter inputs
@pytest.fixture()
def vqa_root(tmp_path) -> Path:
    from data_prep.vqav2 import convert_vqav2

    raw = tmp_path / "raw"
    qs = [(1, 1, "what?"), (2, 2, "which?")]
    q = vqa_questions(raw, "val2014", qs)
    a = vqa_annotations(raw, "val2014", [vqa_annotation(1, 1, "red"), vqa_annotation(2, 2, "blue")])
    root = tmp_path / "data"
    convert_vqav2([str(q)], [str(a)], images=str(raw / "images"), out=str(root / "vqav2"))
    return root


@pytest.mark.parametrize("case", ["truncated_annotations", "no_answers", "limit_0", "limit_negative"])
def test_lmms_export_bad_inputs(case, vqa_root, tmp_path, capfd):
    from llava_structlora.evaluation.lmms_export import main

    ann = vqa_root / "vqav2" / "val_annotations.json"
    extra: list[str] = []
    if case == "truncated_annotations":
        ann.write_text(ann.read_text()[:-30])
    elif case == "no_answers":
        data = json.loads(ann.read_text())
        data["annotations"][1]["answers"] = []
        ann.write_text(json.dumps(data))
    else:
        extra = ["--limit", "0" if case == "limit_0" else "-1"]
    out = tmp_path / "tasks"
    assert main(["--data_root", str(vqa_root), "--out", str(out), "--tasks", "vqav2", *extra]) == 2
    needle = {
        "truncated_annotations": (str(ann), "not valid JSON"),
        "no_answers": (str(ann), "question_id 2 has no 'answers'"),
        "limit_0": ("--limit must be a positive number",),
        "limit_negative": ("--limit must be a positive number", "-1"),
    }[case]
    _clean(capfd, *needle)
    assert not (out / "tasks.json").exists()
