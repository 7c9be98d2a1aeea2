"""Fair tuning, failure handling and report generation with a fake executor (no training)."""
from __future__ import annotations

import math

from experiments.plan import run_table
from experiments.report import claims, markdown, summary_markdown, table_data
from experiments.suite import FULL, RunSpec, SuiteConfig
from experiments.tables import LORA, STRUCT, Table, Variant

VAL = {("lora", 1e-4): 10.0, ("lora", 2e-4): 12.0, ("lora", 5e-4): 11.0,
       ("structlora", 1e-4): 13.0, ("structlora", 2e-4): 13.0, ("structlora", 5e-4): 9.0}


def fake_execute(spec: RunSpec, suite: SuiteConfig) -> dict:
    """Deterministic stand-in: val depends on (method, lr); test on method and seed; DoRA always fails."""
    if spec.method == "dora":
        nan = {"score": math.nan}
        return {"key": spec.key(suite), "failed": "RuntimeError: boom", "val": nan, "test": nan,
                "geometry": {"drift_energy": math.nan, "cos_adj": math.nan}, "train_s": math.nan}
    base = 50.0 if spec.method == "lora" else 52.0 + 0.5 * spec.seed
    return {"key": spec.key(suite), "val": {"score": VAL[(spec.method, spec.lr)]},
            "test": {"score": base + spec.seed + (0.1 if spec.overrides else 0.0)},
            "geometry": {"drift_energy": 1.0 + spec.seed, "cos_adj": 0.5}, "train_s": 1.0,
            "structlora_diagnostics": None}


def test_lr_is_picked_on_validation_with_ties_to_the_smaller_lr_and_failures_reported():
    table = Table("main", "t", ("coco",), (LORA, Variant("DoRA", "dora"), STRUCT,
                                            Variant("w/o IB", "structlora", (("filter", "none"),), "structlora")))
    res = run_table(table, FULL, fake_execute)
    assert res["tuned"]["coco"]["lora"].lr == 2e-4
    assert res["tuned"]["coco"]["structlora"].lr == 1e-4          # tie 1e-4 / 2e-4 -> smaller
    assert res["rows"]["w/o IB"]["tasks"]["coco"]["lr"] == 1e-4   # inherits its family's lr
    assert res["rows"]["DoRA"]["tasks"]["coco"]["error"].startswith("every lr of dora")
    rows = claims(table, res["rows"], res["tasks"])
    s_vs_l = next(c for c in rows if c["a"] == "StructLoRA" and c["b"] == "LoRA")
    assert s_vs_l["n"] == 3 and s_vs_l["mean_diff"] == 2.5 and s_vs_l["p"] < 0.05   # 2 + 0.5 s per seed
    md = markdown(table, res, FULL, rows)
    assert "| LoRA | 51.00 ± 1.00 |" in md and "| DoRA | failed (every lr" in md
    assert "coco/lora → 0.0002 (val 0.0001: 10.00, 0.0002: 12.00, 0.0005: 11.00)" in md
    data = table_data(res, rows, FULL)
    assert data["rows"]["StructLoRA"]["coco"]["test"] == {0: 52.0, 1: 53.5, 2: 55.0}
    summary, counts = summary_markdown({"experiments_main": {"data": data}})
    assert "StructLoRA > LoRA (score)" in summary and counts["verdict_counts"]["reproduced (significant)"] >= 1
