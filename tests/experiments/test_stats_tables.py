"""Statistics, table definitions and report generation of the experiments harness (no training)."""

from __future__ import annotations

import math

import pytest

from experiments.stats import paired_ttest, summarize, verdict
from experiments.suite import FULL, QUICK, RunSpec
from experiments.tables import TABLES, Variant, variants_for


def test_paired_ttest_is_scipy_ttest_rel():
    from scipy.stats import ttest_rel

    a, b = {0: 10.0, 1: 12.0, 2: 11.5}, {0: 9.0, 1: 11.8, 2: 10.0}
    res = paired_ttest(a, b)
    ref = ttest_rel([10.0, 12.0, 11.5], [9.0, 11.8, 10.0])
    assert res.p == pytest.approx(ref.pvalue) and res.t == pytest.approx(ref.statistic)
    assert res.mean_diff == pytest.approx((1.0 + 0.2 + 1.5) / 3)


def test_paired_ttest_pairs_by_seed_and_handles_degenerate_cases():
    assert paired_ttest({0: 1.0, 1: 2.0}, {1: 2.0, 2: 3.0}).p is None  # one common seed
    same = paired_ttest({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert same.p is None and same.note == "identical on every seed"
    shift = paired_ttest({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})
    assert shift.p is None and "+1.00 on every seed" in shift.note


def test_summary_and_verdicts():
    s = summarize([1.0, 2.0, 3.0])
    assert (s.mean, s.std) == (2.0, 1.0) and s.fmt(1) == "2.0 ± 1.0"
    assert summarize([float("nan")]).n == 0
    assert verdict(1.0, 0.01) == "reproduced (significant)"
    assert verdict(1.0, 0.3) == "same direction, not significant"
    assert verdict(-1.0, 0.01) == "contradicted (significant, opposite sign)"
    assert verdict(-1.0, 0.01, paper_sign=-1) == "reproduced (significant)"
    assert verdict(math.nan, None) == "not testable"


def test_defaults_are_not_distinct_runs():
    """'1-layer GNN', 'graph=hybrid', 'filter=ib' are the default StructLoRA: one cached run, not four."""
    keys = {
        RunSpec("coco", v.method, 0, 2e-4, overrides=v.overrides).key(FULL)
        for t in ("gnn_depth", "graph", "filter")
        for v in TABLES[t].variants
        if v.method == "structlora" and v.label in ("1-layer GNN", "graph=hybrid", "filter=ib")
    }
    assert keys == {RunSpec("coco", "structlora", 0, 2e-4).key(FULL)}
    assert Variant("x", "structlora", (("filter", "none"),)).overrides == (("filter", "none"),)


def test_quick_keeps_the_ttest_pair_and_full_keeps_everything():
    for table in TABLES.values():
        quick = variants_for(table, QUICK.variants_per_table)
        if table.name != "defaults":  # knobs vs the StructLoRA default on validation: no LoRA row by design
            assert any(v.method == "lora" and not v.overrides for v in quick), table.name
        if table.name != "lora_rank":  # the testbed's own check: LoRA at each rank, no method comparison
            assert any(v.method == "structlora" and not v.overrides for v in quick), table.name
        assert variants_for(table, None) == table.variants
    main = {v.label for v in variants_for(TABLES["main"], 1)}
    assert main == {"LoRA", "StructLoRA"}


def test_fairness_contract_of_the_full_suite():
    """Same lr grid and steps for every method; 8 reporting seeds for the headline tables, a separate
    tuning seed; main table has the 5 methods on 3 tasks."""
    assert len(FULL.lr_grid) >= 3 and len(FULL.seeds) >= 8 and FULL.tune_seed not in FULL.seeds
    for name in ("main", "rank", "data", "ablation"):
        assert TABLES[name].headline, name
    rank = TABLES["rank"]
    assert {v.rank for v in rank.variants if len(rank.seeds(v, FULL)) >= 8} == {2, 4, 8}
    data = TABLES["data"]
    assert 0.1 in {v.data_fraction for v in data.variants if len(data.seeds(v, FULL)) >= 8}
    assert {v.method for v in TABLES["main"].variants} == {"lora", "dora", "adalora", "lora_dropout", "structlora"}
    assert TABLES["main"].tasks == ("coco", "vqav2", "gqa")
    argv = RunSpec("coco", "dora", 1, 5e-4).train_argv(FULL, FULL.out_root / "x")
    assert argv[argv.index("--max_steps") + 1] == str(FULL.max_steps)
    assert argv[argv.index("--learning_rate") + 1] == "0.0005" and "--deepspeed" not in argv


def test_holm_and_minimum_detectable_effect():
    from scipy.stats import nct, t

    from experiments.stats import holm, mde_paired

    adj = holm([0.01, 0.04, None, 0.03])
    assert adj[2] is None and adj[0] == pytest.approx(0.03) and adj[1] == pytest.approx(0.06) == adj[3]
    d = mde_paired(2.0, 8)
    crit = t.ppf(0.975, 7)
    nc = d * 8**0.5 / 2.0
    assert nct.sf(crit, 7, nc) + nct.cdf(-crit, 7, nc) == pytest.approx(0.8, abs=1e-6)
    assert mde_paired(2.0, 8, alpha=0.01) > d > mde_paired(2.0, 16)


def test_world_seed_gets_its_own_world_base_and_runs():
    import dataclasses

    w = dataclasses.replace(FULL, world_seed=7)
    assert w.data_root.name == "default-w7" and w.shared_base_dir.name == "default-w7"
    assert w.out_root.name == "full-w7" and not w.publishes and FULL.publishes
    assert FULL.data_root.name == "default"


def test_mde_at_three_seeds_has_its_power_by_monte_carlo():
    """At n = 3 and alpha = 0.05/12 (a 3-seed claim in the 12-test main table) a true difference of one MDE
    is detected in 80 % of simulated experiments. scipy's nct gives NaN lower tails there; taking them as
    power 1 (the old code) returned an MDE of 4.1 sd with 14 % power."""
    import numpy as np
    from scipy.stats import t

    from experiments.stats import mde_paired

    n, alpha, sd = 3, 0.05 / 12, 2.0
    d = mde_paired(sd, n, alpha)
    rng = np.random.default_rng(0)
    diffs = rng.normal(d, sd, size=(200_000, n))
    tstat = diffs.mean(1) / (diffs.std(1, ddof=1) / np.sqrt(n))
    power = float((np.abs(tstat) > t.ppf(1 - alpha / 2, n - 1)).mean())
    assert power == pytest.approx(0.8, abs=0.01)
    assert mde_paired(sd, 8, alpha) == pytest.approx(1.8627627 * sd, rel=1e-5)  # n = 8 was right before


def test_tost_equivalence_needs_a_small_and_precise_difference():
    from experiments.stats import tost_paired

    ref = {s: 10.0 + s for s in range(8)}
    close = {s: ref[s] + (0.1 if s % 2 else -0.1) for s in range(8)}  # mean diff 0, sd 0.1
    far = {s: ref[s] + 3.0 + (0.1 if s % 2 else -0.1) for s in range(8)}
    noisy = {s: ref[s] + (5.0 if s % 2 else -5.0) for s in range(8)}  # mean 0, but too noisy to show equivalence
    assert tost_paired(close, ref, 1.0).equivalent()
    assert not tost_paired(far, ref, 1.0).equivalent()
    assert not tost_paired(noisy, ref, 1.0).equivalent()
    assert tost_paired({0: 1.0}, {0: 1.0}, 1.0).p is None
