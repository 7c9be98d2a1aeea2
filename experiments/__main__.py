"""Reproduce the paper's tables on the shapes world.

    python -m experiments TABLE [TABLE ...] [--quick] [--plan] [--world-seed N] [--tasks T ...] [--seeds K]
    bash experiments/run_all.sh [--quick]                      # every table

TABLE: main | rank | data | ablation | gnn_depth | graph | filter | regularizers | all.
Full suite -> docs/results/experiments_<table>.json, docs/RESULTS.md (via record_result) and
docs/figures/*.png. ``--quick`` (CI-size: smoke data, 6 steps, 2 seeds, 2 variants per table)
writes only under outputs/experiments/quick/ and never touches docs/. ``--plan`` prints how
many runs a selection needs (cached ones included) and exits. ``--world-seed N`` builds a shapes
world and a tiny base of its own for seed N (artifacts/{data,base}/<preset>-wN, runs under
outputs/experiments/<suite>-wN), so the study can be re-run on a world it was never tuned on.
``--tasks`` / ``--seeds K`` run a reduced table (fewer endpoints / the first K reporting seeds);
the record says so (its suite settings and seeds).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from recipes.layout import RepoLayout

from .publish import ensure_artifacts, record  # noqa: F401  (also the entry point's helpers)
from .suite import FULL, QUICK, REPO, SuiteConfig
from .tables import ORDER, TABLES

logger = logging.getLogger("experiments")


def _display(path: Path) -> str:
    """Repository-relative path where possible (docs/figures/...), else absolute (EXPERIMENTS_OUT)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def cache_only(spec, suite: SuiteConfig) -> dict:
    """Executor of --cached: the cached result, or a 'not run' placeholder (a missing tuning run fails its family)."""
    from .report import NOT_RUN
    from .runner import cached

    hit = cached(spec, suite)
    if hit is not None:
        return hit
    nan = {"score": float("nan"), "metrics": {}}
    return {
        "key": spec.key(suite),
        "failed": NOT_RUN,
        "val": nan,
        "test": nan,
        "geometry": {"drift_energy": float("nan"), "cos_adj": float("nan")},
        "train_s": float("nan"),
        "structlora_diagnostics": None,
    }


def run_tables(
    names: list[str], suite: SuiteConfig, command: str, only: list[str] | None = None, cached_only: bool = False
) -> dict[str, list[dict]]:
    import torch

    from .eval_data import build_eval_root
    from .plan import run_table
    from .plots import figures_for
    from .power import table_extras
    from .report import claims, markdown, table_data
    from .runner import execute

    torch.set_num_threads(suite.threads)
    ensure_artifacts(suite)
    all_tasks = (QUICK if suite.name == "quick" else FULL).tasks  # not --tasks: parallel processes share it
    counts = build_eval_root(
        suite.data_root, suite.out_root / "eval_data", all_tasks, suite.val_limit, suite.test_limit
    )
    logger.info("eval splits (questions): %s", counts)
    fig_dir = (REPO / "docs" / "figures") if suite.publishes else (suite.out_root / "figures")
    all_claims = {}
    for name in names:
        table = TABLES[name]
        if only:
            import dataclasses

            table = dataclasses.replace(table, variants=tuple(v for v in table.variants if v.label in only))
            if not table.variants:
                raise SystemExit(f"--only {only}: no such variant in table {name}")
        t0 = time.time()
        result = run_table(table, suite, cache_only if cached_only else execute)
        claim_rows = claims(table, result["rows"], result["tasks"])
        md = markdown(table, result, suite, claim_rows)
        extra_md, extra = table_extras(table, result, suite, claim_rows)
        md += "\n\n" + extra_md
        figs = figures_for(table, result, fig_dir)
        shown = [_display(p) for p in figs]
        md += "\n\nFigures: " + (", ".join(f"`{p}`" for p in shown) if shown else "none")
        data = table_data(result, claim_rows, suite) | extra | {"eval_questions": counts, "figures": shown}
        record(f"experiments_{name}", f"Experiment: {table.title}{reduced_tag(suite, only)}", data, md, suite, command)
        all_claims[name] = claim_rows
        logger.info("table %s done in %.0f s", name, time.time() - t0)
    record_summary(suite, command)
    return all_claims


def record_summary(suite: SuiteConfig, command: str) -> None:
    """experiments__summary: every claim of every table recorded so far, with its verdict."""
    import json

    from .report import summary_markdown

    rec_dir = RepoLayout(REPO).results if suite.publishes else (suite.out_root / "records")
    records = {
        p.stem: json.loads(p.read_text())
        for p in rec_dir.glob("experiments_*.json")
        if p.stem != "experiments__summary"
    }
    md, data = summary_markdown(records)
    record(
        "experiments__summary",
        "Experiments: which paper claims reproduce on the shapes world",
        data,
        md,
        suite,
        command,
    )


def reduced_tag(suite: SuiteConfig, only: list[str] | None) -> str:
    """' [reduced: ...]' when a table runs with fewer variants, endpoints or seeds than the suite defines."""
    from .suite import SUITES

    base = QUICK if suite.name == "quick" else SUITES[suite.name]
    parts = [f"only {', '.join(only)}"] if only else []
    if suite.tasks != base.tasks:
        parts.append("tasks " + "/".join(suite.tasks))
    if suite.seeds != base.seeds:
        parts.append(f"{len(suite.seeds)} of {len(base.seeds)} seeds")
    return f" [reduced: {'; '.join(parts)}]" if parts else ""


def suite_from_args(args: argparse.Namespace) -> SuiteConfig:
    import dataclasses

    from .suite import SUITES

    suite = QUICK if args.quick else SUITES[getattr(args, "suite", "full")]
    changes: dict = {"world_seed": args.world_seed}
    if args.tasks:
        changes["tasks"] = tuple(args.tasks)
    if args.seeds:
        changes["seeds"] = suite.seeds[: args.seeds]
    if args.threads:
        changes["threads"] = args.threads
    if getattr(args, "tune_world", None) is not None:
        changes["tune_world"] = args.tune_world
    return dataclasses.replace(suite, **changes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m experiments", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("tables", nargs="+", choices=list(ORDER) + ["all"])
    ap.add_argument("--quick", action="store_true", help="CI-size check (outputs/experiments/quick only)")
    ap.add_argument("--plan", action="store_true", help="print the number of runs and exit")
    ap.add_argument("--world-seed", type=int, default=0, help="shapes-world seed (its own world + base)")
    ap.add_argument("--suite", choices=("full", "deep"), default="full", help="deep: the deeper testbed (4+4 layers)")
    ap.add_argument("--tune-world", type=int, help="pick lrs from this world's tuning runs (never tune on this one)")
    ap.add_argument("--tasks", nargs="+", choices=("coco", "vqav2", "gqa"), help="reduced: only these endpoints")
    ap.add_argument("--seeds", type=int, help="reduced: only the first K reporting seeds")
    ap.add_argument("--only", nargs="+", metavar="LABEL", help="reduced: only these variants (table row labels)")
    ap.add_argument(
        "--cached",
        action="store_true",
        help="record from cached runs only (missing runs show as 'not run'; nothing is trained)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        help="torch threads of this process (default: the suite's); several "
        "processes on disjoint --tasks/--only share one run cache",
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    names = list(ORDER) if "all" in args.tables else list(dict.fromkeys(args.tables))
    suite = suite_from_args(args)
    if args.plan:
        from . import plan
        from .plan import planned_runs

        runs = set().union(*(planned_runs(TABLES[n], suite) for n in names))
        cached = len(list((suite.out_root / "results").glob("*.json")))
        print(
            f"{suite.name}: >= {len(runs)} distinct runs for {names} (+ up to {plan.MAX_EXTEND} lr-grid extensions "
            f"per tuned family and task) "
            f"({cached} results cached in {suite.out_root / 'results'}, all tables together)"
        )
        return 0
    command = "python -m experiments " + " ".join(argv if argv is not None else sys.argv[1:])
    claims = run_tables(names, suite, command, only=args.only, cached_only=args.cached)
    for name, rows in claims.items():
        print(f"== {name}")
        for c in rows:
            print(
                f"  {c['task']} {c['quantity']}: {c['a']} vs {c['b']}: {c['mean_diff']:+.4g} "
                f"p={c['p']} -> {c['verdict']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
