"""eval/*.sh defaults: newest finetune run, clear message when there is none, end to end via bash."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from recipes import evaluate as recipe

ROOT = Path(__file__).resolve().parents[2]


def _fake_run(outputs: Path, name: str) -> Path:
    (outputs / name / "adapter").mkdir(parents=True)
    (outputs / name / "adapter" / "adapter_config.json").write_text("{}")
    return outputs / name


def test_newest_run_and_missing_message(tmp_path):
    with pytest.raises(recipe.RecipeError, match="bash scripts/finetune_vqav2.sh"):
        recipe.newest_run("vqav2", smoke=False, outputs=tmp_path)
    old = _fake_run(tmp_path, "vqav2-lora-r8-s0")
    time.sleep(0.02)
    new = _fake_run(tmp_path, "vqav2-structlora-r8-s0")
    _fake_run(tmp_path, "gqa-structlora-r8-s0")
    (tmp_path / "vqav2-structlora-r8-s1").mkdir()  # unfinished run: no adapter yet
    os.utime(old / "adapter", (time.time() - 100, time.time() - 100))
    assert recipe.newest_run("vqav2", smoke=False, outputs=tmp_path) == new
    with pytest.raises(recipe.RecipeError, match=r"(?s)set SMOKE=0.*SMOKE=1 bash scripts/finetune_vqav2.sh"):
        recipe.newest_run("vqav2", smoke=True, outputs=tmp_path)


def test_config_from_env(monkeypatch, tmp_path, smoke):
    run = _fake_run(tmp_path, "gqa-structlora-r8-s0-smoke")
    (run / "run.json").write_text(json.dumps({"base_model": str(smoke["base"])}))
    for k, v in {
        "ADAPTER": str(run),
        "DATA_ROOT": str(smoke["data"]),
        "PROTOCOL": "llava",
        "NUM_GPUS": "1",
        "BATCH_SIZE": "8",
        "SMOKE": "1",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MODEL", raising=False)
    monkeypatch.delenv("OUTPUT_DIR", raising=False)
    monkeypatch.delenv("SPLIT", raising=False)
    cfg = recipe.config_from_env("gqa")
    assert cfg.model == str(smoke["base"]) and cfg.adapter == str(run) and cfg.split == "testdev"
    assert cfg.output_dir == str(run / "eval" / "gqa-testdev-llava") and cfg.batch_size == 8
    monkeypatch.setenv("DATA_ROOT", str(tmp_path / "nope"))
    with pytest.raises(recipe.RecipeError, match="data_prep.build_default"):
        recipe.config_from_env("gqa")


@pytest.mark.slow
def test_eval_script_end_to_end(smoke, tmp_path):
    env = {
        **os.environ,
        "ADAPTER": str(smoke["random"]),
        "MODEL": str(smoke["base"]),
        "DATA_ROOT": str(smoke["data"]),
        "OUTPUT_DIR": str(tmp_path / "out"),
        "NUM_GPUS": "1",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(["bash", "eval/vqav2.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(proc.stdout)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == metrics
    assert "overall" in metrics and "[eval] VQAv2 val (official): overall" in proc.stderr


def test_throughput_benchmark_runs(smoke):
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_throughput", ROOT / "benchmarks" / "eval_throughput.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert (
        mod.main(
            [
                "--model",
                str(smoke["random"]),
                "--data-root",
                str(smoke["data"]),
                "--n",
                "8",
                "--batch-size",
                "4",
                "--repeats",
                "1",
                "--threads",
                "1",
            ]
        )
        == 0
    )
