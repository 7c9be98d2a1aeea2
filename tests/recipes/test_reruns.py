"""Issue #25 defects 1-4 end to end through the recipe (smoke world, one process): a finished run reruns as a
no-op, the README's knob example trains into its own directory, a changed option is refused, and a run
retrained in place is scored afresh (recipe and eval script alike)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llava_structlora.evaluation.fingerprint import adapter_fingerprint
from recipes import evaluate as eval_recipe
from recipes import finetune
from recipes.layout import RepoLayout

ROOT = Path(__file__).resolve().parents[2]
UNSET = ("OUTPUT_DIR", "METHOD", "RANK", "SEED", "DATA_FRACTION", "RESUME", "ZERO", "ARCH", "ADAPTER", "SPLIT")


@pytest.mark.slow
def test_rerun_knob_refusal_and_retrain_in_place(tmp_path, smoke, monkeypatch, capfd):
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("configs", "zero_configs"):
        (root / name).symlink_to(ROOT / name)
    layout = RepoLayout(root)
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    env = {"SMOKE": "1", "NO_DEEPSPEED": "1", "NUM_GPUS": "1", "EVAL": "1", "MODEL": str(smoke["base"])}
    env |= {"DATA_ROOT": str(smoke["data"]), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)

    assert finetune.main(["--task", "coco"], layout=layout) == 0
    run = layout.outputs / "coco-structlora-r8-s0-smoke"
    first = json.loads((run / "metrics.json").read_text())
    state = (run / "checkpoint-6" / "trainer_state.json").read_text()
    assert first["adapter_digest"] == adapter_fingerprint(run)
    log = [h for h in json.loads(state)["log_history"] if "train_runtime" not in h]
    assert [h["step"] for h in log] == [1, 2, 3, 4, 5, 6] and all("loss" in h for h in log)  # defect: 12 of 25
    capfd.readouterr()

    # defect 3: a finished run is a no-op (nothing launched, no extra step), its scores reused
    assert finetune.main(["--task", "coco"], layout=layout) == 0
    out = capfd.readouterr().out
    assert "already complete (global_step 6" in out and "0 steps to train" in out
    assert "-m llava_structlora.train" not in out
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    assert json.loads((run / "run.json").read_text())["global_step"] == 6
    assert json.loads((run / "metrics.json").read_text())["CIDEr"] == first["CIDEr"]

    # defect 4: the README's knob example after the default run trains into a directory of its own
    assert finetune.main(["--task", "coco", "--coordinator", "laplacian"], layout=layout) == 0
    runs = sorted(p.name for p in layout.outputs.iterdir() if p.is_dir())  # (lock files beside them)
    other = next(layout.outputs / n for n in runs if n != run.name)
    assert len(runs) == 2 and other.name.startswith("coco-structlora-r8-s0-") and other.name.endswith("-smoke")
    sl = json.loads((other / "structlora" / "structlora_config.json").read_text())["config"]
    assert sl["coordinator"] == "laplacian"
    capfd.readouterr()

    # defect 2: a changed option on an existing run is refused with the difference, nothing recorded
    monkeypatch.setenv("OUTPUT_DIR", str(run))
    assert finetune.main(["--task", "coco", "--learning_rate", "1e-2"], layout=layout) == 2
    err = capfd.readouterr().err
    assert "refusing to resume" in err and "learning_rate: 0.0002 -> 0.01" in err
    assert json.loads((run / "run.json").read_text())["config"]["TrainingArguments"]["learning_rate"] == 2e-4

    # defect 1: retrained in place (RESUME=none), the recipe and the eval script both score the new weights
    monkeypatch.setenv("RESUME", "none")
    assert finetune.main(["--task", "coco", "--learning_rate", "1e-2"], layout=layout) == 0
    second = json.loads((run / "metrics.json").read_text())
    assert second["adapter_digest"] == adapter_fingerprint(run) != first["adapter_digest"]
    assert second["n_generated_this_run"] == second["n_questions"]  # fresh answers, not the old run's
    assert json.loads((run / "run.json").read_text())["config"]["TrainingArguments"]["learning_rate"] == 0.01
    monkeypatch.setenv("ADAPTER", str(run))
    monkeypatch.setattr(eval_recipe.RepoLayout, "checkout", classmethod(lambda cls: layout))
    capfd.readouterr()
    assert eval_recipe.main(["--task", "coco", "--split", "val", "--limit", "4"]) == 0
    metrics = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert metrics["adapter_digest"] == second["adapter_digest"] and metrics["n_questions"] == 4
