"""kill -9 during generation, rerun: every id exactly once, answers equal an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llava_structlora.evaluation import EvalConfig, evaluate

ROOT = Path(__file__).resolve().parents[2]


def _cli(smoke, out):
    cmd = [
        sys.executable,
        "-m",
        "llava_structlora.evaluation",
        "--task",
        "vqav2",
        "--model",
        str(smoke["random"]),
        "--data-root",
        str(smoke["data"]),
        "--output-dir",
        str(out),
        "--batch-size",
        "1",
        "--max-new-tokens",
        "6",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    return cmd, env


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.slow
def test_kill9_then_resume_equals_uninterrupted(smoke, tmp_path):
    ref_dir, out = tmp_path / "ref", tmp_path / "crash"
    evaluate(
        EvalConfig(
            task="vqav2",
            model=str(smoke["random"]),
            data_root=str(smoke["data"]),
            output_dir=str(ref_dir),
            batch_size=1,
            max_new_tokens=6,
            device="cpu",
        )
    )
    n_total = _lines(ref_dir / "answers.jsonl")
    cmd, env = _cli(smoke, out)
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    shard = out / "answers" / "shard-00-of-01.jsonl"
    deadline = time.monotonic() + 240
    while _lines(shard) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _lines(shard)
    assert proc.returncode == -signal.SIGKILL and 5 <= done < n_total, "the kill must land mid-generation"
    assert not (out / "answers.jsonl").exists()

    rerun = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    metrics = json.loads(rerun.stdout)
    assert metrics["n_generated_this_run"] == n_total - done
    got = (out / "answers.jsonl").read_text().splitlines()
    ids = [json.loads(x)["question_id"] for x in got]
    assert len(ids) == len(set(ids)) == n_total
    assert got == (ref_dir / "answers.jsonl").read_text().splitlines()
