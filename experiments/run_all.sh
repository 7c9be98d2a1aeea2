#!/usr/bin/env bash
# Every table of the paper on the shapes world (docs/experiments.md), resumable (cached per run).
#   bash experiments/run_all.sh           # full suite -> docs/RESULTS.md, docs/figures/ (<= ~2 h on 2 cores)
#   bash experiments/run_all.sh --quick   # CI-size check of the harness (< 3 min), outputs/experiments/quick/
# One table: python -m experiments main|rank|data|ablation|gnn_depth|graph|filter|regularizers [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec "$PYTHON" -m experiments all "$@"
