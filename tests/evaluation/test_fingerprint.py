"""Answers are keyed by the adapter's contents: the same weights give the same key whatever the file's bytes;
new weights in the same directory give a new key (so a run retrained in place is scored afresh)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from llava_structlora.evaluation.fingerprint import (
    FingerprintError,
    adapter_fingerprint,
    model_fingerprint,
    safetensors_digest,
)


def _adapter(folder, scale: float = 1.0, metadata=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 2, "peft_type": "LORA"}))
    tensors = {"a.lora_A.weight": torch.ones(2, 4) * scale, "a.lora_B.weight": torch.zeros(4, 2)}
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata=metadata or {"format": "pt"})
    return folder


def test_digest_ignores_metadata_order_and_sees_every_tensor_byte(tmp_path):
    a = _adapter(tmp_path / "a", metadata={"format": "pt", "x": "1", "y": "2"})
    b = _adapter(tmp_path / "b", metadata={"y": "2", "x": "1", "format": "pt"})
    c = _adapter(tmp_path / "c", scale=1.0 + 2**-20)
    fa, fb, fc = (safetensors_digest(d / "adapter_model.safetensors") for d in (a, b, c))
    assert fa == fb and fa != fc


def test_a_retrained_run_in_place_gets_a_new_key(tmp_path):
    run = tmp_path / "run"
    _adapter(run / "adapter")
    (run / "run.json").write_text("{}")
    first = adapter_fingerprint(run)
    assert adapter_fingerprint(run / "adapter") == first  # the run dir counts as its adapter
    (run / "README.md").write_text("notes")  # not something that loads
    assert adapter_fingerprint(run) == first
    _adapter(run / "adapter", scale=2.0)
    assert adapter_fingerprint(run) != first
    assert adapter_fingerprint(None) is None


def test_truncated_weights_name_the_file(tmp_path):
    folder = _adapter(tmp_path / "a")
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(FingerprintError, match="adapter_model.safetensors: truncated"):
        adapter_fingerprint(folder)


def test_a_rewritten_base_changes_its_fingerprint(smoke, tmp_path):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(smoke["base"], base)
    first = model_fingerprint(base)
    assert model_fingerprint(base) == first
    weights = base / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # same bytes, rewritten: a new mtime
    assert model_fingerprint(base) != first


def test_answers_key_and_recipe_defaults(smoke, tmp_path, monkeypatch):
    from llava_structlora.evaluation.config import EvalConfig
    from llava_structlora.evaluation.run import answers_key
    from recipes import evaluate as recipe

    run = tmp_path / "coco-structlora-r8-s0-smoke"
    _adapter(run / "adapter")
    cfg = EvalConfig(task="coco", model=str(smoke["base"]), data_root=str(smoke["data"]), output_dir=str(tmp_path))
    qfile = cfg.spec.questions_jsonl(smoke["data"], cfg.split)
    cfg.adapter = str(run)
    before = answers_key(cfg, qfile)
    _adapter(run / "adapter", scale=3.0)
    after = answers_key(cfg, qfile)
    assert before["adapter"] == after["adapter"] and before["adapter_digest"] != after["adapter_digest"]
    for name in ("OUTPUT_DIR", "MODEL", "SPLIT", "LIMIT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ADAPTER", str(run))
    monkeypatch.setenv("DATA_ROOT", str(smoke["data"]))
    monkeypatch.setenv("MODEL", str(smoke["base"]))
    monkeypatch.setenv("NUM_GPUS", "1")
    default = recipe.config_from_env("coco")
    assert default.output_dir.startswith(str(run)) and default.overwrite  # its own answers dir: stale replaced
    given = recipe.config_from_env("coco", flags={"output_dir": str(tmp_path / "mine"), "limit": 4})
    assert not given.overwrite and given.limit == 4  # a user's dir is never wiped; flags reach the config
