"""Fair tuning, failure handling and report generation with a fake executor (no training)."""

from __future__ import annotations

import dataclasses
import math

from experiments.plan import next_lr, run_table
from experiments.report import claims, markdown, summary_markdown, table_data
from experiments.suite import FULL, RunSpec, SuiteConfig
from experiments.tables import LORA, STRUCT, Table, Variant

VAL = {
    ("lora", 1e-4): 10.0,
    ("lora", 2e-4): 12.0,
    ("lora", 5e-4): 11.0,
    ("structlora", 1e-4): 13.0,
    ("structlora", 2e-4): 13.0,
    ("structlora", 5e-4): 9.0,
}


def fake_execute(spec: RunSpec, suite: SuiteConfig) -> dict:
    """Deterministic stand-in: val depends on (method, lr); test on method and seed; DoRA always fails."""
    if spec.method == "dora":
        nan = {"score": math.nan}
        return {
            "key": spec.key(suite),
            "failed": "RuntimeError: boom",
            "val": nan,
            "test": nan,
            "geometry": {"drift_energy": math.nan, "cos_adj": math.nan},
            "train_s": math.nan,
        }
    base = 50.0 if spec.method == "lora" else 52.0 + 0.5 * spec.seed
    return {
        "key": spec.key(suite),
        "val": {"score": VAL.get((spec.method, spec.lr), 0.0)},
        "test": {"score": base + spec.seed + (0.1 if spec.overrides else 0.0)},
        "geometry": {"drift_energy": 1.0 + spec.seed, "cos_adj": 0.5},
        "train_s": 1.0,
        "structlora_diagnostics": None,
    }


def test_lr_is_picked_on_validation_with_ties_to_the_smaller_lr_and_failures_reported():
    table = Table(
        "main",
        "t",
        ("coco",),
        (LORA, Variant("DoRA", "dora"), STRUCT, Variant("w/o IB", "structlora", (("filter", "none"),), "structlora")),
    )
    suite = dataclasses.replace(FULL, lr_grid=(1e-4, 2e-4, 5e-4))
    res = run_table(table, suite, fake_execute)
    assert res["tuned"]["coco"]["lora"].lr == 2e-4 and res["tuned"]["coco"]["lora"].interior
    assert res["tuned"]["coco"]["structlora"].lr == 1e-4  # tie 1e-4 / 2e-4 -> smaller
    # 1e-4 was the grid's edge: the grid grew by the next 1-2-5 value below it (5e-5) until bracketed
    assert sorted(res["tuned"]["coco"]["structlora"].val_scores) == [5e-5, 1e-4, 2e-4, 5e-4]
    assert res["tuned"]["coco"]["structlora"].interior
    assert res["rows"]["w/o IB"]["tasks"]["coco"]["lr"] == 1e-4  # inherits its family's lr
    assert res["rows"]["DoRA"]["tasks"]["coco"]["error"].startswith("every lr of dora")
    rows = claims(table, res["rows"], res["tasks"])
    s_vs_l = next(c for c in rows if c["a"] == "StructLoRA" and c["b"] == "LoRA")
    assert s_vs_l["n"] == 3 and s_vs_l["mean_diff"] == 2.5 and s_vs_l["p"] < 0.05  # 2 + 0.5 s per seed
    assert s_vs_l["p_holm"] >= s_vs_l["p"] and s_vs_l["holm_m"] == sum(c["p"] is not None for c in rows)
    assert s_vs_l["mde"] > 0
    md = markdown(table, res, suite, rows)
    assert "| LoRA | 51.00 ± 1.00 |" in md and "| DoRA | failed (every lr" in md
    assert "coco/lora → 0.0002, interior optimum (val 0.0001: 10.00, 0.0002: 12.00, 0.0005: 11.00)" in md
    assert "Reporting seeds (test split): [0, 1, 2]" in md and "Holm" in md
    data = table_data(res, rows, suite)
    assert data["rows"]["StructLoRA"]["coco"]["test"] == {0: 52.0, 1: 53.5, 2: 55.0}
    summary, counts = summary_markdown({"experiments_main": {"data": data}})
    assert "StructLoRA > LoRA (score)" in summary and counts["verdict_counts"]["reproduced (significant)"] >= 1


def test_lr_series_and_tuning_seed_is_never_a_reporting_seed():
    assert [next_lr(x, True) for x in (1e-3, 2e-3, 5e-3)] == [2e-3, 5e-3, 1e-2]
    assert [next_lr(x, False) for x in (1e-3, 2e-4, 1e-4)] == [5e-4, 1e-4, 5e-5]
    assert FULL.tune_seed not in FULL.seeds
    spec = RunSpec("coco", "lora", FULL.tune_seed, 1e-3)
    assert spec.splits(FULL) == ("val",) and RunSpec("coco", "lora", 0, 1e-3).splits(FULL) == ("test",)
    assert RunSpec("coco", "structlora", 0, 1e-3).splits(FULL) == ("val", "test")  # defaults chosen on val
