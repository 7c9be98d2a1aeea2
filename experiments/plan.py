"""Fair tuning and the run plan of a table.

Protocol (the same for every method, docs/experiments.md): for each task and each method of the
main table, train at every lr of ``suite.lr_grid`` with ``suite.tune_seed`` (a seed never reported)
and the same steps, pick the lr with the best *validation* score (ties -> the smaller lr); while
the best lr is at an edge of the grid, the grid grows by the next value of the 1-2-5 series beyond
that edge (at most ``MAX_EXTEND`` times), so every pick is an interior optimum or says it is not.
Then every reporting seed trains at that lr and its *test* score is reported. Other tables reuse
the lr tuned for the variant's family.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .suite import RunSpec, SuiteConfig
from .tables import Table, Variant, variants_for

logger = logging.getLogger("experiments")
Executor = Callable[[RunSpec, SuiteConfig], dict[str, Any]]


MAX_EXTEND = 5  # 3 left StructLoRA (coupling) on COCO at the 2e-2 edge of both testbeds


@dataclass(frozen=True)
class Tuned:
    lr: float
    val_scores: dict[float, float]  # lr -> validation score (tune seed)

    @property
    def interior(self) -> bool:
        """The pick has a tried lr on both sides (a bracketed optimum), not an edge of the grid."""
        lrs = sorted(self.val_scores)
        return lrs[0] < self.lr < lrs[-1]


def next_lr(lr: float, up: bool) -> float:
    """The neighbour of `lr` in the 1-2-5 series (1e-3 -> 2e-3 -> 5e-3 -> 1e-2; 2e-4 -> 1e-4 -> 5e-5)."""
    import math

    exp = math.floor(math.log10(lr) + 1e-9)
    mant = round(lr / 10**exp)
    series = [1, 2, 5]
    i = min(range(3), key=lambda k: abs(series[k] - mant))
    j = i + (1 if up else -1)
    exp, j = (exp + 1, 0) if j == 3 else (exp - 1, 2) if j < 0 else (exp, j)
    return float(f"{series[j]}e{exp}")


def _best(scores: dict[float, float]) -> float | None:
    finite = [lr for lr in sorted(scores) if scores[lr] == scores[lr]]  # drop failed (NaN) runs
    return max(finite, key=lambda lr: scores[lr]) if finite else None  # sorted + max: smallest on ties


def tune_lr(task: str, family: str, suite: SuiteConfig, execute: Executor) -> Tuned:
    """Best validation lr of `family` (a main-table method at r=8, full data) on `task`, bracketed."""
    scores: dict[float, float] = {}
    not_run: set[float] = set()
    grid = list(suite.lr_grid)
    suite = suite.tuning_suite  # --tune-world: another world's validation runs pick the lr
    for _ in range(MAX_EXTEND + 1):
        for lr in grid:
            if lr not in scores:
                res = execute(RunSpec(task, family, suite.tune_seed, lr), suite)
                scores[lr] = res["val"]["score"]
                if str(res.get("failed", "")).startswith("not run"):
                    not_run.add(lr)
        best = _best(scores)
        if best is None and not_run == set(scores):  # a cache-only record: nothing was trained, nothing failed
            raise RuntimeError(f"not run: no tuning run of {family} on {task} is cached")
        if best is None:
            raise RuntimeError(f"every lr of {family} on {task} failed; see {suite.out_root / 'results'}/*.failed.txt")
        lrs = sorted(scores)
        if lrs[0] < best < lrs[-1] or len(lrs) < 2:
            break
        grid = [next_lr(best, up=best == lrs[-1])]
    logger.info("tuned %s/%s: lr=%g (val %s)", task, family, best, scores)
    return Tuned(best, scores)


def spec_for(variant: Variant, task: str, seed: int, lr: float) -> RunSpec:
    return RunSpec(
        task=task,
        method=variant.method,
        seed=seed,
        lr=lr,
        rank=variant.rank,
        data_fraction=variant.data_fraction,
        overrides=variant.overrides,
    )


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
            seeds = table.seeds(v, suite)
            row["tasks"][task] = {"lr": lr, "runs": {s: execute(spec_for(v, task, s, lr), suite) for s in seeds}}
    return {"table": table, "tasks": tasks, "tuned": tuned, "rows": rows}


def planned_runs(table: Table, suite: SuiteConfig) -> set[tuple]:
    """Distinct runs of a table (every initial grid lr of each family's tuning + the seeds of every variant).

    Tuning seeds are never reporting seeds, so nothing is shared between the two; the count is a lower
    bound by the grid extensions (at most MAX_EXTEND per family and task) that tuning may need."""
    runs: set[tuple] = set()
    for task in (t for t in table.tasks if t in suite.tasks):
        for v in variants_for(table, suite.variants_per_table):
            runs.update(("tune", task, v.family, lr) for lr in suite.lr_grid)
            runs.update(
                (task, v.method, v.family, v.overrides, v.rank, v.data_fraction, s) for s in table.seeds(v, suite)
            )
    return runs
