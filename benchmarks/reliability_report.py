"""Run the reliability suite and record its outcome in docs/RESULTS.md.

    python benchmarks/reliability_report.py [--no-slow] [--no-record] [--baseline REV]

Runs ``pytest tests/reliability`` with a JUnit XML report and turns it into a table of the failure
classes the suite covers (cases per class and their outcomes) followed by one row per test
(outcome, seconds, first line of the failure), so the report in RESULTS.md is generated from a
real run, never typed. Open findings are in docs/design.md §9 (known limitations).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# Test module (or module::test-name prefix, the longest match wins) -> the failure class it covers.
CLASSES = {
    "test_data_loss": "Data loss refused (merge/release/builders/converters never replace foreign data)",
    "test_resume_payload": "Untrusted code: resume never unpickles code",
    "test_untrusted_files": "Untrusted code: adapters and StructLoRA dirs (pickle refused, missing files named)",
    "test_record_schema": "Training-record schema: counted, named skips; encodings and nesting",
    "test_bad_inputs": "Bad-input corpus: images, JSON files, converters, configs, scorer ids",
    "test_early_validation": "Early validation: refused before any model is built",
    "test_error_boundary": "One error boundary per entry point: exit 2, file and record named, no traceback",
    "test_atomic_writes": "Atomic writes under kill -9",
    "test_crash_resume": "Crash + resume: kill -9 then resume gives the identical result",
    # issues #22 and #24 (the classes not covered by the configuration-validation work)
    **{
        f"test_interrupts::test_interrupted_{k}": f"#22 Interrupted {v} (SIGTERM/SIGKILL at several points, rerun)"
        for k, v in (
            ("merge", "merge and release"),
            ("release", "merge and release"),
            ("reconversion", "converters"),
            ("first_conversion", "converters"),
            ("evaluation", "evaluation"),
        )
    },
    "test_interrupts::test_leftovers": "#22 Leftovers of killed runs (owner gone, earlier tempfile names) swept",
    "test_interrupts::test_legacy": "#22 Leftovers of killed runs (owner gone, earlier tempfile names) swept",
    "test_concurrency": "#22 Concurrent runs on one output: one wins, the other exits 2 naming the lock",
    "test_filesystem::test_disk_full": "#22/#24 Disk full: the directory named, nothing that looks complete",
    "test_filesystem::test_read_only": "#22 Read-only outputs: the directory named, nothing written",
    **{
        f"test_fault_classes::{k}": "#22 User errors: adapter shapes, pickled .bin, not-safetensors, "
        "mistyped question image, unhashable metric ids"
        for k in (
            "test_adapter_whose_shapes",
            "test_pickled_adapter",
            "test_adapter_safetensors",
            "test_question_record",
            "test_metrics_input",
        )
    },
    **{
        f"test_fault_classes::{k}": "#24 Errors that name the file: damaged merged shard, garbled eval_key.json"
        for k in ("test_merged_model", "test_garbled_eval_key")
    },
    **{
        f"test_fault_classes::{k}": "#24 Corrupted run state: torn trainer_state.json, no optimizer.pt, "
        "edited rank, a release stock PEFT cannot load"
        for k in ("test_corrupted_checkpoint", "test_fresh_optimizer", "test_edited_rank", "test_release_")
    },
    "test_filesystem::test_out_that_is_a_symlink": "#24 The user's filesystem: symlinked OUT, umask",
    "test_filesystem::test_outputs_honour": "#24 The user's filesystem: symlinked OUT, umask",
    "test_processes": "#24 Processes: SIGTERM to the launcher reaches and waits for every rank",
    "test_fault_classes::test_lmms_export": "#24 lmms-eval exporter inputs",
}
NEW_MODULES = ("test_interrupts", "test_concurrency", "test_filesystem", "test_fault_classes", "test_processes")


def class_of(module: str, name: str) -> str:
    """The failure class of one test (see CLASSES)."""
    keys = [k for k in CLASSES if k == module or (k.startswith(module + "::") and name.startswith(k.split("::")[1]))]
    return CLASSES[max(keys, key=len)] if keys else module


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-slow", action="store_true", help="skip the crash tests (marked slow)")
    p.add_argument("--no-record", action="store_true")
    p.add_argument(
        "--baseline",
        metavar="REV",
        help="also run this checkout's tests of the #22/#24 classes against the code of git revision REV "
        "(a temporary worktree) and record the before/after counts per class",
    )
    return p.parse_args(argv)


def outcome(case: ET.Element) -> tuple[str, str]:
    """(passed|failed|error|skipped|xfail, first message line) of a JUnit testcase."""
    for tag in ("failure", "error", "skipped"):
        node = case.find(tag)
        if node is not None:
            msg = (node.get("message") or node.text or "").strip().splitlines()
            first = msg[0][:160] if msg else ""
            if tag == "skipped" and node.get("type") == "pytest.xfail":
                return "xfail", first
            return ("failed" if tag == "failure" else tag), first
    return "passed", ""


def run_suite(no_slow: bool, root: Path = REPO, paths: tuple[str, ...] = ("tests/reliability",)):
    """(rows, pytest exit code, wall seconds) of the suite (or `paths`) run in checkout `root`."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            *paths,
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={xml}",
            "-o",
            "junit_family=xunit1",
        ] + (["-m", "not slow"] if no_slow else [])
        t0 = time.time()
        rc = subprocess.run(cmd, cwd=root).returncode
        wall = time.time() - t0
        rows = []
        for case in ET.parse(xml).getroot().iter("testcase"):
            status, msg = outcome(case)
            module = case.get("classname", "").split(".")[-1]
            rows.append(
                {
                    "test": f"{module}::{case.get('name')}",
                    "class": class_of(module, case.get("name", "")),
                    "outcome": status,
                    "seconds": float(case.get("time", 0)),
                    "message": msg,
                }
            )
    return rows, rc, wall


def run_baseline(rev: str) -> tuple[list[dict], int, float]:
    """This checkout's tests of the new classes, run against the library code of `rev`.

    A test that needs a hook the old code lacks (a kill point, a new module) fails there too: "before"
    counts what the old code passes of these cases, whatever the reason it does not.
    """
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), rev], cwd=REPO, check=True)
        try:
            for link in (".venv", "artifacts"):
                if (REPO / link).exists():
                    (old / link).symlink_to((REPO / link).resolve())
            shutil.rmtree(old / "tests" / "reliability")
            shutil.copytree(REPO / "tests" / "reliability", old / "tests" / "reliability")
            paths = tuple(f"tests/reliability/{m}.py" for m in NEW_MODULES)
            return run_suite(False, old, paths)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO)


NOT_RUNNABLE = ("ImportError", "ModuleNotFoundError", "before its stop point", "never started")
HOOK_CLASSES = ("#22 Interrupted",)  # the kill points are hooks of the new publish rule


def before_outcome(row: dict) -> str:
    """passed | failed | not runnable: a case the old code cannot be driven through (a module, an API or a
    kill point it lacks) is not counted as a behavioural failure."""
    if row["outcome"] == "passed":
        return "passed"
    if any(t in row["message"] for t in NOT_RUNNABLE) or row["class"].startswith(HOOK_CLASSES):
        return "not runnable"
    return "failed"


def before_after(before: list[dict], after: list[dict], rev: str) -> list[str]:
    """Per new class: cases, their outcomes on `rev` (before) and passed now (after)."""
    lines = [
        f"| class | cases | before ({rev}): passed | failed | not runnable there | after: passed |",
        "|---|---|---|---|---|---|",
    ]
    for cls in [c for c in dict.fromkeys(r["class"] for r in after) if c.startswith("#")]:
        got = Counter(before_outcome(r) for r in before if r["class"] == cls)
        a = [r for r in after if r["class"] == cls]
        lines.append(
            f"| {cls} | {len(a)} | {got['passed']} | {got['failed']} | {got['not runnable']} | "
            f"{sum(r['outcome'] == 'passed' for r in a)} |"
        )
    return lines


def class_table(rows: list[dict]) -> list[str]:
    """One line per failure class: how many cases, and how they came out."""
    lines = ["| class | cases | passed | failed / error | skipped |", "|---|---|---|---|---|"]
    order = list(dict.fromkeys(CLASSES.values())) + sorted({r["class"] for r in rows} - set(CLASSES.values()))
    for cls in order:
        got = Counter(r["outcome"] for r in rows if r["class"] == cls)
        if got:
            lines.append(
                f"| {cls} | {sum(got.values())} | {got['passed']} | {got['failed'] + got['error']} | "
                f"{got['skipped'] + got['xfail']} |"
            )
    return lines


def markdown(rows: list[dict], wall: float, baseline: list[str] | None = None) -> str:
    counts = Counter(r["outcome"] for r in rows)
    lines = [
        f"{len(rows)} tests in {wall:.0f} s: "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + ". Open findings: `docs/design.md` §9 (known limitations); what each test "
        "covers: `docs/benchmarks.md`.",
        "",
        *class_table(rows),
        "",
        *(
            ["Issues #22 / #24: the same cases run against the code before and after the fix.", "", *baseline, ""]
            if baseline
            else []
        ),
        "| test | outcome | s | message |",
        "|---|---|---|---|",
    ]
    for r in rows:
        msg = r["message"].replace("|", "\\|")
        lines.append(f"| `{r['test']}` | {r['outcome']} | {r['seconds']:.1f} | {msg} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows, rc, wall = run_suite(args.no_slow)
    data: dict = {"rows": rows, "pytest_exit_code": rc, "wall_s": wall}
    table = None
    if args.baseline:
        before, brc, bwall = run_baseline(args.baseline)
        table = before_after(before, rows, args.baseline)
        data["baseline"] = {"rev": args.baseline, "rows": before, "pytest_exit_code": brc, "wall_s": bwall}
    md = markdown(rows, wall, table)
    print(md)
    if not args.no_record:
        sys.path.insert(0, str(REPO))
        from recipes.results import record_result

        record_result(
            "reliability",
            "Reliability: data loss, untrusted code, record schema, early validation, error boundaries, bad "
            "inputs, atomic writes, crash/resume, interruption, concurrency, filesystem, run state, processes",
            data,
            md,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
