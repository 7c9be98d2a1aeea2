#!/usr/bin/env bash
# The test command of the README quick start (and of CI): unit tests + smoke runs.
#   bash scripts/test.sh [extra pytest args]
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh || exit 1
"$PYTHON" -m pytest tests -q -p no:cacheprovider --durations=15 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "[test] pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$rc"
