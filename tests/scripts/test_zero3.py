"""ZeRO-3 for StructLoRA on 2 CPU ranks (DeepSpeed CPU accelerator + gloo): the same adapter as ZeRO-2,
and an interrupted ZeRO-3 run resumes to the same adapter. See llava_structlora/train/zero3.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
FILES = ("adapter/adapter_model.safetensors", "structlora/structlora_model.safetensors")


def _train(out: Path, zero: str, snap: dict) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        SMOKE="1",
        EVAL="0",
        NUM_GPUS="2",
        RESUME="auto",
        OUTPUT_DIR=str(out),
        ZERO=f"zero_configs/{zero}.json",
        **snap,
    )
    env.pop("MASTER_PORT", None)
    proc = subprocess.run(
        ["bash", "scripts/finetune_coco.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _max_diff(a: Path, b: Path) -> float:
    worst = 0.0
    for name in FILES:
        x, y = load_file(str(a / name)), load_file(str(b / name))
        assert x.keys() == y.keys(), name
        for k in x:
            assert x[k].shape == y[k].shape, f"{name}:{k}: {tuple(x[k].shape)} vs {tuple(y[k].shape)}"
            assert x[k].numel() > 0, f"{name}:{k} is empty"
            worst = max(worst, (x[k].float() - y[k].float()).abs().max().item())
    return worst


@pytest.fixture(scope="module")
def runs(tmp_path_factory, smoke_snapshot):
    root = tmp_path_factory.mktemp("zero")
    z2, z3 = root / "z2", root / "z3"
    _train(z2, "zero2", smoke_snapshot)
    proc = _train(z3, "zero3", smoke_snapshot)
    return z2, z3, proc


def test_zero3_gives_the_zero2_adapter(runs):
    z2, z3, proc = runs
    assert "kept whole on every rank" in proc.stdout, "the ZeRO-3 path must have run"
    diff = _max_diff(z2, z3)
    print(f"[zero3] max abs diff ZeRO-3 vs ZeRO-2 (adapter + StructLoRA state): {diff:.3g}")
    assert diff <= 1e-6
    trained = load_file(str(z3 / FILES[0]))
    assert any(t.abs().max() > 0 for k, t in trained.items() if "lora_B" in k), "B factors must have trained"


def test_zero3_resumes_to_the_same_adapter(runs, smoke_snapshot, tmp_path):
    _, z3, _ = runs
    out = tmp_path / "resumed"
    shutil.copytree(z3, out)
    for name in ("checkpoint-6", "adapter", "structlora", "run.json"):  # as if killed after checkpoint-3
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    proc = _train(out, "zero3", smoke_snapshot)
    assert "resuming from" in proc.stdout and "checkpoint-3" in proc.stdout
    diff = _max_diff(z3, out)
    print(f"[zero3] max abs diff resumed vs uninterrupted ZeRO-3: {diff:.3g}")
    assert diff <= 1e-6
