"""Fair tuning and the run plan of a table.

Protocol (the same for every method, docs/experiments.md): for each task and each method of the
main table, train at every lr of ``suite.lr_grid`` with ``suite.tune_seed`` and the same steps,
pick the lr with the best *validation* score (ties -> the smaller lr), then train every seed at
that lr and report the *test* score. Other tables reuse the lr tuned for the variant's family.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from .suite import RunSpec, SuiteConfig
from .tables import Table, Variant, variants_for

logger = logging.getLogger("experiments")
Executor = Callable[[RunSpec, SuiteConfig], dict[str, Any]]


@dataclass(frozen=True)
class Tuned:
    lr: float
    val_scores: dict[float, float]       # lr -> validation score (tune seed)


def tune_lr(task: str, family: str, suite: SuiteConfig, execute: Executor) -> Tuned:
    """Best validation lr of `family` (a main-table method at r=8, full data) on `task`."""
    scores = {}
    for lr in suite.lr_grid:
        res = execute(RunSpec(task, family, suite.tune_seed, lr), suite)
        scores[lr] = res["val"]["score"]
    finite = [lr for lr in sorted(scores) if scores[lr] == scores[lr]]  # drop failed (NaN) runs
    if not finite:
        raise RuntimeError(f"every lr of {family} on {task} failed; see {suite.out_root / 'results'}/*.failed.txt")
    best = max(finite, key=lambda lr: scores[lr])  # sorted + max keeps the smallest on ties
    logger.info("tuned %s/%s: lr=%g (val %s)", task, family, best, scores)
    return Tuned(best, scores)


def spec_for(variant: Variant, task: str, seed: int, lr: float) -> RunSpec:
    return RunSpec(task=task, method=variant.method, seed=seed, lr=lr, rank=variant.rank,
                   data_fraction=variant.data_fraction, overrides=variant.overrides)


def run_table(table: Table, suite: SuiteConfig, execute: Executor) -> dict[str, Any]:
    """Execute (or read from cache) every run of `table`; returns raw per-seed results."""
    variants = variants_for(table, suite.variants_per_table)
    tasks = [t for t in table.tasks if t in suite.tasks]
    tuned: dict[str, dict[str, Tuned]] = {}
    rows: dict[str, dict[str, Any]] = {}
    failed: dict[tuple[str, str], str] = {}
    for task in tasks:
        tuned[task] = {}
        for v in variants:
            row = rows.setdefault(v.label, {"variant": v, "tasks": {}})
            if v.family not in tuned[task] and (task, v.family) not in failed:
                try:
                    tuned[task][v.family] = tune_lr(task, v.family, suite, execute)
                except RuntimeError as exc:  # every lr of the family failed: report it, go on
                    failed[(task, v.family)] = str(exc)
            if (task, v.family) in failed:
                row["tasks"][task] = {"lr": None, "runs": {}, "error": failed[(task, v.family)]}
                continue
            lr = tuned[task][v.family].lr
            row["tasks"][task] = {"lr": lr, "runs": {s: execute(spec_for(v, task, s, lr), suite) for s in suite.seeds}}
    return {"table": table, "tasks": tasks, "tuned": tuned, "rows": rows}


def planned_runs(table: Table, suite: SuiteConfig) -> set[tuple]:
    """Distinct runs of a table (every grid lr of each family's tuning + the seeds of every variant).

    A variant identical to its family's tuning run shares the tune-seed run with it; the count is
    exact up to that sharing (the tuned lr is unknown before tuning)."""
    runs: set[tuple] = set()
    for task in (t for t in table.tasks if t in suite.tasks):
        for v in variants_for(table, suite.variants_per_table):
            runs.update(("tune", task, v.family, lr) for lr in suite.lr_grid)
            plain = v.method == v.family and not v.overrides and v.rank == 8 and v.data_fraction == 1.0
            seeds = [s for s in suite.seeds if not (plain and s == suite.tune_seed)]
            runs.update((task, v.method, v.family, v.overrides, v.rank, v.data_fraction, s) for s in seeds)
    return runs
