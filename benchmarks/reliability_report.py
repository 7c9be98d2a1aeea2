"""Run the reliability suite and record its outcome in docs/RESULTS.md.

    python benchmarks/reliability_report.py [--no-slow] [--no-record]

Runs ``pytest tests/reliability`` with a JUnit XML report and turns it into a table of the failure
classes the suite covers (cases per class and their outcomes) followed by one row per test
(outcome, seconds, first line of the failure), so the report in RESULTS.md is generated from a
real run, never typed. Open findings are in docs/design.md §9 (known limitations).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# Test module -> the failure class it covers (the failure classes plus the original bad-input corpus).
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
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-slow", action="store_true", help="skip the crash tests (marked slow)")
    p.add_argument("--no-record", action="store_true")
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


def run_suite(no_slow: bool) -> tuple[list[dict], int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "tests/reliability",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={xml}",
            "-o",
            "junit_family=xunit1",
        ] + (["-m", "not slow"] if no_slow else [])
        t0 = time.time()
        rc = subprocess.run(cmd, cwd=REPO).returncode
        wall = time.time() - t0
        rows = []
        for case in ET.parse(xml).getroot().iter("testcase"):
            status, msg = outcome(case)
            module = case.get("classname", "").split(".")[-1]
            rows.append(
                {
                    "test": f"{module}::{case.get('name')}",
                    "class": CLASSES.get(module, module),
                    "outcome": status,
                    "seconds": float(case.get("time", 0)),
                    "message": msg,
                }
            )
    return rows, rc, wall


def class_table(rows: list[dict]) -> list[str]:
    """One line per failure class: how many cases, and how they came out."""
    lines = ["| class | cases | passed | failed / error | skipped |", "|---|---|---|---|---|"]
    order = list(CLASSES.values()) + sorted({r["class"] for r in rows} - set(CLASSES.values()))
    for cls in order:
        got = Counter(r["outcome"] for r in rows if r["class"] == cls)
        if got:
            lines.append(
                f"| {cls} | {sum(got.values())} | {got['passed']} | {got['failed'] + got['error']} | "
                f"{got['skipped'] + got['xfail']} |"
            )
    return lines


def markdown(rows: list[dict], wall: float) -> str:
    counts = Counter(r["outcome"] for r in rows)
    lines = [
        f"{len(rows)} tests in {wall:.0f} s: "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + ". Open findings: `docs/design.md` §9 (known limitations); what each test "
        "covers: `docs/benchmarks.md`.",
        "",
        *class_table(rows),
        "",
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
    md = markdown(rows, wall)
    print(md)
    if not args.no_record:
        sys.path.insert(0, str(REPO))
        from recipes.results import record_result

        record_result(
            "reliability",
            "Reliability: data loss, untrusted code, record schema, early validation, "
            "error boundaries, bad inputs, atomic writes, crash/resume",
            {"rows": rows, "pytest_exit_code": rc, "wall_s": wall},
            md,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
