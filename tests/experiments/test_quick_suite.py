"""`bash experiments/run_all.sh --quick`: the whole harness end to end at CI size, through the real
trainer and evaluator; tables come from the cached per-run JSON; the suite resumes from its cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.tables import ORDER

REPO = Path(__file__).resolve().parents[2]
TABLES = ORDER  # every table of the suite gets a record


def _run(args: list[str], out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EXPERIMENTS_OUT": str(out), "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_quick_suite_end_to_end_and_resume(tmp_path):
    docs_before = (REPO / "docs" / "RESULTS.md").stat().st_mtime
    t0 = time.time()
    res = _run(["bash", "experiments/run_all.sh", "--quick"], tmp_path)
    elapsed = time.time() - t0
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    quick = tmp_path / "quick"
    records = {p.stem: json.loads(p.read_text()) for p in (quick / "records").glob("*.json")}
    assert set(records) == {f"experiments_{t}" for t in TABLES} | {"experiments__summary"}
    summary = records["experiments__summary"]
    assert summary["data"]["tables_missing"] == [] and sum(summary["data"]["verdict_counts"].values()) >= 4
    results = {p.stem: json.loads(p.read_text()) for p in (quick / "results").glob("*.json")}
    planned = int(
        _run([sys.executable, "-m", "experiments", "all", "--quick", "--plan"], tmp_path)
        .stdout.split(">= ")[1]
        .split()[0]
    )
    extensions = sum(
        len(f["val"]) - 2
        for rec in records.values()
        for fams in rec["data"].get("tuned", {}).values()
        for f in fams.values()
    )  # lr values added beyond the 2-value quick grid
    assert planned <= len(results) <= planned + extensions
    # every number of a table is the test score of a cached run (nothing typed by hand)
    main = records["experiments_main"]["data"]["rows"]
    for _label, tasks in main.items():
        for _task, row in tasks.items():
            for seed, score in row["test"].items():
                assert results[row["run_keys"][seed]]["test"]["score"] == score
    assert {"LoRA", "StructLoRA"} <= set(main)
    claims = records["experiments_main"]["data"]["claims"]
    assert claims and all(c["a"] == "StructLoRA" for c in claims)
    md = (quick / "RESULTS.md").read_text()
    assert "[quick] Experiment: Main table" in md and "paired two-sided t-test" in md
    figs = {p.name for p in (quick / "figures").glob("*.png")}
    assert {"rank_curve.png", "data_curve.png", "regularizers_geometry.png", "main_gate_maps.png"} <= figs
    assert (REPO / "docs" / "RESULTS.md").stat().st_mtime == docs_before, "--quick must not touch docs/"
    # resumable: a rerun executes nothing; a deleted result is the only run redone
    victim = next(iter(sorted((quick / "results").glob("*.json"))))
    victim.unlink()
    res2 = _run([sys.executable, "-m", "experiments", "all", "--quick"], tmp_path)
    assert res2.returncode == 0, res2.stderr[-3000:]
    redone = [ln for ln in res2.stderr.splitlines() if " experiments: run " in ln]
    assert len(redone) == 1 and victim.stem in redone[0]
    print(f"quick suite: {elapsed:.0f} s, {len(results)} runs")
