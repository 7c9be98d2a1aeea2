"""Testbed checks (margins, gate movement, mechanical CosAdj) and the parallel workers' plan (no training)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from experiments.base_margin import BAR, margin
from experiments.power import (
    gate_moves,
    gate_shift,
    lora_data_effect,
    lora_data_markdown,
    smoothing_end,
    smoothing_markdown,
)
from experiments.suite import FULL, RunSpec
from experiments.tables import LORA, STRUCT, Table


def test_margin_is_gain_over_seed_std():
    m = margin({0: 12.0, 1: 14.0, 2: 13.0}, base=3.0)
    assert m["gain"] == pytest.approx(10.0) and m["lora_std"] == pytest.approx(1.0)
    assert m["gain_over_std"] == pytest.approx(10.0) and m["passes"] == (10.0 >= BAR)
    assert not margin({0: 4.0, 1: 6.0}, base=3.0)["passes"]
    assert math.isnan(margin({0: 4.0}, base=3.0)["gain_over_std"])


def test_gate_shift_prefers_the_what_moved_record_and_falls_back_to_diagnostics():
    moved = {
        "what_moved": {
            "eval_gate_delta": {"median_abs": 0.25, "mean_abs": 0.4},
            "gate_param_delta": {"log_alpha": {"median_abs": 6.0}},
            "open_fraction": {"final": 0.6},
        }
    }
    assert gate_shift(moved) == (0.25, "what-moved record")
    assert gate_moves(moved) == {
        "median_abs_delta_eval_gate": 0.25,
        "mean_abs_delta_eval_gate": 0.4,
        "median_abs_delta_gate_param": 6.0,
        "open_fraction_end": 0.6,
        "median_abs_delta_smoothing_coef": None,  # no coordinator record in this run
    }
    diag = {
        "structlora_diagnostics": {
            "first_gate_values": {"a": [1.0, 1.0], "b": [1.0, 0.5]},
            "gate_values": {"a": [0.5, 1.0], "b": [0.9, 0.5]},
            "first_step": 10,
        }
    }
    value, src = gate_shift(diag)
    assert value == pytest.approx(0.05) and "step 10" in src  # median of |Δ| = (0.5, 0, 0.1, 0)
    assert gate_shift({"structlora_diagnostics": None}) == (None, "no gate record")


def _fake_result(spec: RunSpec, suite, val: float, test: float) -> None:
    from experiments.runner import result_path

    path = result_path(spec, suite)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "key": spec.key(suite),
                "val": {"score": val},
                "test": {"score": test},
                "geometry": {"drift_energy": 0.0, "cos_adj": 0.0},
                "train_s": 1.0,
            }
        )
    )


def test_workers_plan_grid_then_extension_then_seeds(tmp_path, monkeypatch):
    """The dry plan asks for the whole initial grid at once, then the extension, then the reporting seeds."""
    from experiments import tables
    from experiments.workers import claim, needed_runs

    monkeypatch.setenv("EXPERIMENTS_OUT", str(tmp_path))
    suite = dataclasses.replace(FULL, tasks=("coco",), lr_grid=(1e-3, 2e-3), seeds=(0, 1, 2), minor_seeds=2)
    monkeypatch.setitem(tables.TABLES, "t", Table("t", "t", ("coco",), (LORA, STRUCT)))
    need = needed_runs(["t"], suite, ["LoRA"])
    assert [(s.method, s.lr, s.seed) for s in need] == [("lora", 1e-3, 100), ("lora", 2e-3, 100)]
    for s, val in zip(need, (1.0, 2.0)):  # the top of the grid wins: grow it upwards
        _fake_result(s, suite, val, 0.0)
    assert [(s.lr, s.seed) for s in needed_runs(["t"], suite, ["LoRA"])] == [(5e-3, 100)]
    _fake_result(RunSpec("coco", "lora", 100, 5e-3), suite, 1.5, 0.0)
    seeds = needed_runs(["t"], suite, ["LoRA"])
    assert [(s.lr, s.seed) for s in seeds] == [(2e-3, 0), (2e-3, 1)]  # minor table: 2 seeds at the bracketed lr
    assert claim(seeds[0], suite) and not claim(seeds[0], suite)  # one worker per run


def test_smoothing_summary_reports_concentration_per_seed():
    """The coordinator's per-edge smoothing at the end, per seed, and the largest edge's share of it."""
    sm = lambda q, v: {"smoothing": {"coef_init": {"q": 0.25, "v": 0.25}, "coef_final": {"q": q, "v": v}}}  # noqa: E731
    row = {"tasks": {"coco": {"runs": {0: {"what_moved": sm(0.5, 0.0)}, 1: {"what_moved": sm(0.3, 0.2)}, 2: {}}}}}
    per_seed = smoothing_end(row, "coco")
    assert set(per_seed) == {"0", "1"} and per_seed["0"]["final"] == {"q": 0.5, "v": 0.0}
    md = smoothing_markdown({"StructLoRA": {"coco": per_seed}})
    assert "mean η·a 0.25 → 0.25" in md and "share 0.80 (of 2 edges; uniform 0.50)" in md


def test_lora_data_effect_compares_each_fraction_with_full_data():
    from experiments.tables import Variant

    def row(f: float, scores: list[float]) -> dict:
        runs = {s: {"test": {"score": v}} for s, v in enumerate(scores)}
        return {"variant": Variant(f"LoRA data={f:g}", "lora", data_fraction=f), "tasks": {"coco": {"runs": runs}}}

    result = {"tasks": ["coco"], "rows": {"a": row(0.01, [430.0, 440.0, 420.0]), "b": row(1.0, [500.0, 505.0, 495.0])}}
    eff = lora_data_effect(result)
    assert set(eff) == {"0.01"} and eff["0.01"]["mean_diff"] == pytest.approx(-70.0)
    assert eff["0.01"]["in_seed_std"] == pytest.approx(-14.0) and eff["0.01"]["p"] < 0.01
    assert "1%: -70.0 (-14.0 seed std" in lora_data_markdown(eff)
