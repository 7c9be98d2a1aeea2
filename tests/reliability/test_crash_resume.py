"""Crash tests: ``kill -9`` of the real recipe at 3 points of training
and of the real evaluation CLI at 3 points of generation; resumed results equal uninterrupted ones.

Training: ``SMOKE=1 EVAL=0 bash scripts/finetune_coco.sh`` (2-rank DeepSpeed ZeRO-2 on CPU,
``RESUME=auto``) with more steps and frequent checkpoints. Kill 1 lands while a checkpoint is
being written (a ``checkpoint-N`` dir without its COMPLETE marker), which also checks that a
half-written checkpoint is never resumed from; kills 2 and 3 land a random delay after a new
checkpoint. The final adapter (stock PEFT and full StructLoRA state) must match an
uninterrupted run within 1e-6, and the last run must really have resumed. Evaluation:
``python -m llava_structlora.evaluation`` killed after a random number of answered questions,
three times, then run to the end: every question answered exactly once (the rerun generates only the
unanswered ones) and every answer identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .killer import REPO, child_env, kill9, start

pytestmark = pytest.mark.slow

STEPS, SAVE_EVERY = 24, 4
TRAIN_FLAGS = ["--max_steps", str(STEPS), "--save_steps", str(SAVE_EVERY), "--save_total_limit", "2"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict[str, Path]:
    """Private snapshot of the smoke data + base (built by the cached builders if missing), so that
    a rebuild of artifacts/ by another process cannot change the weights between two runs."""
    from recipes.finetune import ensure_defaults
    from recipes.layout import RepoLayout

    base, data = ensure_defaults(RepoLayout.checkout(), "smoke")
    root = tmp_path_factory.mktemp("smoke")
    shutil.copytree(data, root / "data")
    shutil.copytree(base, root / "base")
    return {"data": root / "data", "base": root / "base"}


def _finetune_cmd() -> list[str]:
    return ["bash", str(REPO / "scripts" / "finetune_coco.sh"), *TRAIN_FLAGS]


def _train_env(out: Path, smoke: dict[str, Path]) -> dict[str, str]:
    return {
        "SMOKE": "1",
        "EVAL": "0",
        "OUTPUT_DIR": str(out),
        "RESUME": "auto",
        "SEED": "0",
        "DATA_ROOT": str(smoke["data"]),
        "MODEL": str(smoke["base"]),
    }


def _train(out: Path, smoke: dict[str, Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        _finetune_cmd(), cwd=REPO, env=child_env(**_train_env(out, smoke)), capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, smoke) -> Path:
    """One uninterrupted training run on the snapshot."""
    out = tmp_path_factory.mktemp("train") / "reference"
    res = _train(out, smoke)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


def _checkpoints(out: Path) -> tuple[list[int], list[int]]:
    """(complete steps, partial steps) of ``checkpoint-N`` dirs."""
    from llava_structlora.train.checkpoints import MARKER

    done, partial = [], []
    for d in out.glob("checkpoint-*"):
        if d.name.split("-")[-1].isdigit():
            (done if (d / MARKER).is_file() else partial).append(int(d.name.split("-")[-1]))
    return sorted(done), sorted(partial)


def _kill_when(proc, out: Path, mid_save: bool, delay: float, timeout: float = 180.0) -> str:
    """Kill during a checkpoint write (mid_save) or ``delay`` s after a new complete checkpoint."""
    start_done = _checkpoints(out)[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        done, partial = _checkpoints(out)
        if mid_save and [p for p in partial if not done or p > done[-1]]:
            kill9(proc)
            return f"mid-save of checkpoint-{max(partial)}"
        if not mid_save and done and done != start_done:
            time.sleep(delay)
            kill9(proc)
            return f"{delay:.2f}s after checkpoint-{done[-1]}"
        time.sleep(0.005)
    kill9(proc)
    return "run ended before the kill point"


def _assert_same_tensors(a: Path, b: Path, tol: float = 1e-6, note: str = "") -> None:
    from safetensors.torch import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    assert set(ta) == set(tb), f"{a} vs {b}: different tensor names"
    worst = max(float((ta[k].float() - tb[k].float()).abs().max()) for k in ta)
    assert worst <= tol, f"{a} vs {b}: max abs diff {worst:.3e} > {tol} ({note})"


def test_training_killed_three_times_resumes_to_the_same_adapter(reference_run, smoke, tmp_path):
    out = tmp_path / "crashed"
    rng = random.Random(1234)
    points = []
    for i in range(3):
        proc = start(_finetune_cmd(), **_train_env(out, smoke))
        points.append(_kill_when(proc, out, mid_save=(i == 0), delay=rng.uniform(0.0, 1.0)))
        points.append(f"after kill {i + 1}: complete/partial checkpoints {_checkpoints(out)}")
    res = _train(out, smoke)
    assert res.returncode == 0, f"kill points {points}\n" + res.stdout[-3000:] + res.stderr[-3000:]
    assert "mid-save" in points[0] or "after" in points[0], points
    resumed = json.loads((out / "run.json").read_text()).get("resumed_from")
    assert resumed and "checkpoint-" in resumed, f"the last run did not resume ({resumed!r}); {points}"
    for sub in ("adapter/adapter_model.safetensors", "structlora/structlora_model.safetensors"):
        _assert_same_tensors(reference_run / sub, out / sub, note=f"kill points: {points}")
    state = json.loads((out / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS


# ----------------------------------------------------------------------------- evaluation
def _eval_cmd(adapter: Path, out: Path, smoke: dict[str, Path]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llava_structlora.evaluation",
        "--task",
        "gqa",
        "--model",
        str(smoke["base"]),
        "--adapter",
        str(adapter),
        "--data-root",
        str(smoke["data"]),
        "--output-dir",
        str(out),
        "--batch-size",
        "1",
        "--device",
        "cpu",
    ]


def _answered(out: Path) -> int:
    return (
        sum(p.read_bytes().count(b"\n") for p in (out / "answers").glob("*.jsonl")) if (out / "answers").is_dir() else 0
    )


def _answers(out: Path) -> dict:
    rows = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines() if line.strip()]
    ids = [r["question_id"] for r in rows]
    assert len(ids) == len(set(ids)), f"{out}: duplicated ids"
    return {r["question_id"]: r["text"] for r in rows}


def test_evaluation_killed_three_times_gives_identical_answers(reference_run, smoke, tmp_path):
    adapter = reference_run / "adapter"
    ref, out = tmp_path / "ref", tmp_path / "crashed"
    res = subprocess.run(
        _eval_cmd(adapter, ref, smoke), cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    expected = _answers(ref)
    n = len(expected)
    thresholds = sorted(random.Random(99).sample(range(3, n - 3), 3))
    landed = []
    for k in thresholds:
        proc = start(_eval_cmd(adapter, out, smoke))
        deadline = time.monotonic() + 180
        while _answered(out) < k and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        kill9(proc)
        landed.append(_answered(out))
    assert any(0 < a < n for a in landed), f"no kill landed mid-generation: {landed} of {n}"
    assert not (out / "answers.jsonl").exists() or _answered(out) == n
    before = _answered(out)
    res = subprocess.run(
        _eval_cmd(adapter, out, smoke), cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["n_generated_this_run"] == n - before  # answered questions are not redone
    assert _answers(out) == expected
