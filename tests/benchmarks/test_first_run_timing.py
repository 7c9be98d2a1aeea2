"""benchmarks/first_run.py times the README's two commands by phase; the test command's phases come from
pytest's own JUnit XML, so they are checked here on a real one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.first_run import TESTS_BAR_S, junit_phases, markdown_tests, phase_times  # noqa: E402


def test_junit_phases_sum_the_test_time_per_test_folder(tmp_path):
    tests = tmp_path / "tests"
    for folder, body in (("alpha", "import time\ndef test_a():\n    time.sleep(0.3)\n"),
                         ("beta", "def test_b():\n    pass\ndef test_c():\n    pass\n")):  # fmt: skip
        (tests / folder).mkdir(parents=True)
        (tests / folder / f"test_{folder}.py").write_text(body)
    xml = tmp_path / "junit.xml"
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", f"--junitxml={xml}"],
                         cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    ph = junit_phases(xml)
    assert list(ph) == ["alpha", "beta"], ph  # largest first
    assert 0.3 <= ph["alpha"] < 2.0 and ph["beta"] < 0.3


def test_test_command_markdown_states_the_bar_verdict():
    t = {"total_s": TESTS_BAR_S + 1, "phases_s": {"train": 500.0, "data": 20.0}, "summary": "9 passed",
         "load_avg_start": 0.1, "load_avg_end": 1.9}  # fmt: skip
    assert "NOT met" in markdown_tests(t) and "train 500 s" in markdown_tests(t) and "520 s in all" in markdown_tests(t)
    assert "NOT met" not in markdown_tests({**t, "total_s": TESTS_BAR_S})


def test_phase_times_end_at_the_recipes_own_lines():
    lines = [(1.0, "[setup] installed the requirements into .venv in 1 s"), (3.0, "[build_default] built"),
             (4.0, "llava_structlora.toy.prebuilt: installed"), (9.0, "[finetune] adapter: /x")]  # fmt: skip
    assert phase_times(lines, 0.0, 12.0) == {"install": 1.0, "data": 2.0, "base": 1.0, "train": 5.0, "eval": 3.0}
