"""Reproduce the paper's tables on the shapes world.

    python -m experiments TABLE [TABLE ...] [--quick] [--plan]
    bash experiments/run_all.sh [--quick]                      # every table

TABLE: main | rank | data | ablation | gnn_depth | graph | filter | regularizers | all.
Full suite -> docs/results/experiments_<table>.json, docs/RESULTS.md (via record_result) and
docs/figures/*.png. ``--quick`` (CI-size: smoke data, 6 steps, 2 seeds, 2 variants per table)
writes only under outputs/experiments/quick/ and never touches docs/. ``--plan`` prints how
many runs a selection needs (cached ones included) and exits.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from recipes.layout import RepoLayout

from .suite import FULL, QUICK, REPO, SuiteConfig
from .tables import ORDER, TABLES

logger = logging.getLogger("experiments")


def ensure_artifacts(suite: SuiteConfig) -> None:
    """Build (or find up to date: both builders are cached by stamps) the shapes world and tiny base,
    then snapshot the base into the suite's directory (cached runs are keyed by its stamp)."""
    import shutil

    from data_prep.build_default import build_default
    from llava_structlora.toy.build_base import build_base
    from llava_structlora.utils.io import atomic_directory

    build_default(suite.data_root, suite.preset)
    build_base(suite.data_root, suite.shared_base_dir, suite.preset)
    stamp = "build_stamp.json"
    snap, shared = suite.base_dir / stamp, suite.shared_base_dir / stamp
    if not snap.exists() or snap.read_bytes() != shared.read_bytes():
        with atomic_directory(suite.base_dir) as tmp:
            shutil.copytree(suite.shared_base_dir, tmp, dirs_exist_ok=True)
        logger.info("snapshot of %s -> %s", suite.shared_base_dir, suite.base_dir)


def record(name: str, title: str, data: dict, md: str, suite: SuiteConfig, command: str) -> Path:
    """Full suite: record_result (docs/results + RESULTS.md). Quick: same record format, under outputs/."""
    from recipes import results

    if suite.name == "full":
        return results.record_result(name, title, data, md, command=command, seeds=suite.seeds)
    out_dir = suite.out_root / "records"
    from llava_structlora.utils.io import atomic_write_json

    rec = {"name": name, "title": f"[quick] {title}", "command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "git_commit": results.git_commit(), "machine": results.machine_info(), "seeds": list(suite.seeds),
           "data": data, "markdown": md}
    path = atomic_write_json(out_dir / f"{name}.json", rec)
    results.render(out_dir, suite.out_root / "RESULTS.md")
    return path


def _display(path: Path) -> str:
    """Repository-relative path where possible (docs/figures/...), else absolute (EXPERIMENTS_OUT)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def run_tables(names: list[str], suite: SuiteConfig, command: str) -> dict[str, list[dict]]:
    import torch

    from .eval_data import build_eval_root
    from .plan import run_table
    from .plots import figures_for
    from .report import claims, markdown, table_data
    from .runner import execute

    torch.set_num_threads(suite.threads)
    ensure_artifacts(suite)
    counts = build_eval_root(suite.data_root, suite.out_root / "eval_data", suite.tasks, suite.val_limit,
                             suite.test_limit)
    logger.info("eval splits (questions): %s", counts)
    fig_dir = (REPO / "docs" / "figures") if suite.name == "full" else (suite.out_root / "figures")
    all_claims = {}
    for name in names:
        table = TABLES[name]
        t0 = time.time()
        result = run_table(table, suite, execute)
        claim_rows = claims(table, result["rows"], result["tasks"])
        md = markdown(table, result, suite, claim_rows)
        figs = figures_for(table, result, fig_dir)
        shown = [_display(p) for p in figs]
        md += "\n\nFigures: " + (", ".join(f"`{p}`" for p in shown) if shown else "none")
        data = table_data(result, claim_rows, suite) | {"eval_questions": counts, "figures": shown}
        record(f"experiments_{name}", f"Experiment: {table.title}", data, md, suite, command)
        all_claims[name] = claim_rows
        logger.info("table %s done in %.0f s", name, time.time() - t0)
    record_summary(suite, command)
    return all_claims


def record_summary(suite: SuiteConfig, command: str) -> None:
    """experiments__summary: every claim of every table recorded so far, with its verdict."""
    import json

    from .report import summary_markdown

    rec_dir = RepoLayout(REPO).results if suite.name == "full" else (suite.out_root / "records")
    records = {p.stem: json.loads(p.read_text()) for p in rec_dir.glob("experiments_*.json")
               if p.stem != "experiments__summary"}
    md, data = summary_markdown(records)
    record("experiments__summary", "Experiments: which paper claims reproduce on the shapes world", data, md,
           suite, command)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tables", nargs="+", choices=list(ORDER) + ["all"])
    ap.add_argument("--quick", action="store_true", help="CI-size check (outputs/experiments/quick only)")
    ap.add_argument("--plan", action="store_true", help="print the number of runs and exit")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    names = list(ORDER) if "all" in args.tables else list(dict.fromkeys(args.tables))
    suite = QUICK if args.quick else FULL
    if args.plan:
        from .plan import planned_runs
        runs = set().union(*(planned_runs(TABLES[n], suite) for n in names))
        cached = len(list((suite.out_root / "results").glob("*.json")))
        print(f"{suite.name}: <= {len(runs)} distinct runs for {names} "
              f"({cached} results cached in {suite.out_root / 'results'}, all tables together)")
        return 0
    command = "python -m experiments " + " ".join(args.tables) + (" --quick" if args.quick else "")
    claims = run_tables(names, suite, command)
    for name, rows in claims.items():
        print(f"== {name}")
        for c in rows:
            print(f"  {c['task']} {c['quantity']}: {c['a']} vs {c['b']}: {c['mean_diff']:+.4g} p={c['p']} -> {c['verdict']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
