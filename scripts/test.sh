#!/usr/bin/env bash
# The test command of the README quick start (and of CI): unit tests + smoke runs.
#   bash scripts/test.sh [extra pytest args]      (-n 0: one process; -n N: N workers)
# Two pytest-xdist workers, one test file each at a time (--dist loadfile: a file's session fixtures and cached
# venvs stay in one process); the end-to-end files start first (tests/conftest.py). Two separate runs, not a
# side-by-side ratio: one process took 893 s in CI of e2d6060, two workers 636 s on an idle 2-core machine
# (docs/RESULTS.md "First run of a fresh clone").
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh || exit 1
"$PYTHON" -m pytest tests -q -p no:cacheprovider -n 2 --dist loadfile --durations=15 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "[test] pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$rc"
