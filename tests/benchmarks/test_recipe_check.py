"""benchmarks/recipe_check.py reads a finished recipe run's own records (moved.json, metrics*.json) and
reports the gate and coordinator movement and the scores it finds there, never a default."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.recipe_check import markdown, summarize  # noqa: E402


def test_summarize_reads_the_runs_records(tmp_path):
    moved = {
        "num_layers": 2,
        "r": 4,
        "gate_param_delta": {"log_alpha": {"median_abs": 0.8, "mean_abs": 1.0, "max_abs": 3.0}},
        "eval_gate_delta": {"median_abs": 0.0, "mean_abs": 0.2, "max_abs": 1.0},
        "open_directions": {"init": {"a": 4, "b": 4}, "final": {"a": 4, "b": 1}},
        "smoothing": {"coef_init": {"a <-> b": 0.25}, "coef_final": {"a <-> b": 0.3}, "median_abs_delta": 0.05},
    }
    (tmp_path / "moved.json").write_text(json.dumps(moved))
    (tmp_path / "metrics.json").write_text(json.dumps({"CIDEr": 1.405}))
    (tmp_path / "metrics_base.json").write_text(json.dumps({"CIDEr": 0.9}))
    res = summarize(tmp_path)
    assert res["median_abs_delta_gate_param"] == 0.8 and res["gate_param"] == "log_alpha"
    assert res["closed_at_end"] == 3 and res["directions"] == 8
    assert res["smoothing_coef_init_mean"] == 0.25 and res["smoothing_coef_final_mean"] == pytest.approx(0.3)
    assert res["cider_adapter"] == pytest.approx(140.5) and res["cider_base"] == pytest.approx(90.0)
    md = markdown(res, 250)
    assert "0.800 (log_alpha)" in md and "3 of 8" in md and "0.2500 -> 0.3000" in md and "140.5" in md
    (tmp_path / "metrics.json").unlink()
    with pytest.raises(FileNotFoundError):  # a run without its validation is an error, not a blank row
        summarize(tmp_path)


def test_gain_reads_the_main_metric_and_applies_issue_21s_bar(tmp_path):
    from benchmarks.recipe_check import gain, gains_markdown

    (tmp_path / "metrics.json").write_text(json.dumps({"overall": 58.1, "yes/no": 70.0}))
    (tmp_path / "metrics_base.json").write_text(json.dumps({"overall": 45.69}))
    run = {"global_step": 235, "config": {"TrainingArguments": {"learning_rate": 5e-4}}}
    (tmp_path / "run.json").write_text(json.dumps(run))
    g = gain(tmp_path, "vqav2")
    assert g["metric"] == "overall" and g["gain"] == pytest.approx(12.41) and g["passes"] and g["bar"] == 5.0
    assert g["lr"] == 5e-4 and g["steps"] == 235
    (tmp_path / "metrics.json").write_text(json.dumps({"CIDEr": 3.7419}))
    (tmp_path / "metrics_base.json").write_text(json.dumps({"CIDEr": 3.1226}))
    low = gain(tmp_path, "coco")
    assert not low["passes"] and low["bar"] == 1.0  # the 2e-4 recipe's 0.62 CIDEr is below the bar
    md = gains_markdown({"vqav2": g | {"wall_s": 80.0}, "coco": low | {"wall_s": 70.0}}, "default")
    assert "| vqav2 | overall | 0.0005 | 235 | 58.1000 | 45.6900 | +12.4100 | >= 5 | yes | 80 |" in md
    assert "| coco | CIDEr |" in md and "| NO |" in md
