"""Run a selection of tables with several worker processes that share one run cache.

    python -m experiments.workers TABLE [TABLE ...] [--only LABEL ...] [--tasks T ...] [--seeds K] &
    python -m experiments.workers TABLE [TABLE ...] [--only LABEL ...] [--tasks T ...] [--seeds K] &

Each worker repeatedly asks the table plan (experiments.plan.run_table, driven by a dry executor
that only reads the cache) which runs are needed *now* - the initial lr grid, a grid extension once
the grid's edge won, the reporting seeds once their family is tuned - claims one that no other worker
holds (an O_EXCL claim file beside the cache) and trains it. A worker exits when nothing is left; one
that finds only runs claimed by others waits for them; a file ``<out_root>/STOP`` makes every worker stop
after its current run. Afterwards ``python -m experiments TABLE``
(same flags) builds the records from the cache without training anything. Workers run one torch
thread each: on a shared 2-core machine two single-thread processes beat one two-thread process.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from typing import Any

from .suite import RunSpec, SuiteConfig

logger = logging.getLogger("experiments")
WAIT_S = 20


class _Dry:
    """Executor that answers from the cache and records what is missing (tuning runs block their family)."""

    def __init__(self) -> None:
        self.needed: list[RunSpec] = []

    def __call__(self, spec: RunSpec, suite: SuiteConfig) -> dict[str, Any]:
        from .runner import cached

        hit = cached(spec, suite)
        if hit is not None:
            return hit
        if spec not in self.needed:
            self.needed.append(spec)
        if spec.seed == suite.tune_seed:  # an untrained tuning run: this family's lr is not known yet
            raise _Pending()
        nan = {"score": float("nan"), "metrics": {}}
        return {
            "key": spec.key(suite),
            "failed": "pending",
            "val": nan,
            "test": nan,
            "geometry": {"drift_energy": float("nan"), "cos_adj": float("nan")},
            "train_s": float("nan"),
        }


class _Pending(RuntimeError):
    pass


def needed_runs(names: list[str], suite: SuiteConfig, only: list[str] | None) -> list[RunSpec]:
    """Runs the selection needs next, given what is cached (tuning grids first, table order)."""
    import dataclasses

    from . import plan
    from .runner import cached
    from .tables import TABLES

    dry = _Dry()
    for name in names:
        table = TABLES[name]
        if only:
            table = dataclasses.replace(table, variants=tuple(v for v in table.variants if v.label in only))
        for task in (t for t in table.tasks if t in suite.tasks):
            for v in plan.variants_for(table, suite.variants_per_table):
                grid = [RunSpec(task, v.family, suite.tune_seed, lr) for lr in suite.lr_grid]
                missing = [g for g in grid if cached(g, suite.tuning_suite) is None]
                if missing and suite.tuning_suite is not suite:  # another world's tuning: not this worker's to train
                    continue
                if missing:  # the initial grid runs in parallel; extensions wait for it
                    dry.needed.extend(g for g in missing if g not in dry.needed)
                    continue
                try:
                    lr = plan.tune_lr(task, v.family, suite, dry).lr
                except (_Pending, RuntimeError):
                    continue
                for s in table.seeds(v, suite):
                    dry(plan.spec_for(v, task, s, lr), suite)
    if suite.tuning_suite is not suite:  # grid extensions of another world's tuning are that world's runs
        return [s for s in dry.needed if s.seed != suite.tune_seed]
    return dry.needed


def claim(spec: RunSpec, suite: SuiteConfig) -> bool:
    from .runner import result_path

    path = result_path(spec, suite).with_suffix(".claim")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    return True


def work(names: list[str], suite: SuiteConfig, only: list[str] | None, wait: bool = True) -> int:
    """Train needed runs until none is left (or, without `wait`, none is claimable); returns how many."""
    from .runner import cached, execute, result_path

    done = 0
    while True:
        if (suite.out_root / "STOP").exists():  # e.g. to restart on new code without losing a run
            logger.info("worker %d: %s exists; stopping after %d run(s)", os.getpid(), suite.out_root / "STOP", done)
            return done
        needed = needed_runs(names, suite, only)
        if not needed:
            return done
        mine = next((s for s in needed if cached(s, suite) is None and claim(s, suite)), None)
        if mine is None and not wait:
            logger.info(
                "worker %d: the %d run(s) left are claimed by other workers; moving on", os.getpid(), len(needed)
            )
            return done
        if mine is None:
            logger.info("worker %d: %d run(s) needed, all claimed by other workers; waiting", os.getpid(), len(needed))
            time.sleep(WAIT_S)
            continue
        try:
            execute(mine, suite)
            done += 1
        finally:
            result_path(mine, suite).with_suffix(".claim").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    import torch

    from .__main__ import ensure_artifacts, suite_from_args
    from .eval_data import build_eval_root
    from .suite import FULL, QUICK
    from .tables import ORDER

    ap = argparse.ArgumentParser(
        prog="python -m experiments.workers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("tables", nargs="+", choices=list(ORDER) + ["all"])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--suite", choices=("full", "deep"), default="full")
    ap.add_argument("--tune-world", type=int, help="pick lrs from this world's tuning runs (never tune on this one)")
    ap.add_argument("--tasks", nargs="+", choices=("coco", "vqav2", "gqa"))
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--only", nargs="+", metavar="LABEL")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--no-wait",
        action="store_true",
        default=False,
        help="exit instead of waiting when every needed run is claimed by another worker",
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    suite = suite_from_args(args)
    torch.set_num_threads(suite.threads)
    ensure_artifacts(suite)
    build_eval_root(
        suite.data_root,
        suite.out_root / "eval_data",
        (QUICK if args.quick else FULL).tasks,
        suite.val_limit,
        suite.test_limit,
    )
    names = list(ORDER) if "all" in args.tables else list(dict.fromkeys(args.tables))
    n = work(names, suite, args.only, wait=not args.no_wait)
    logger.info("worker %d: trained %d run(s); nothing left for %s", os.getpid(), n, names)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
