#!/usr/bin/env bash
# Evaluate a merged model with lmms-eval on our VQAv2 / GQA / COCO splits, scored by lmms-eval's own code.
#   bash eval/lmms_eval.sh MERGED_DIR [extra lmms_eval args, e.g. --limit 20]
# MERGED_DIR: the output of scripts/merge_adapter.sh (or any llava-hf model folder with a chat template).
# Env: LMMS_PYTHON (a python with lmms-eval: python -m venv /opt/lmms && /opt/lmms/bin/pip install -r
#      requirements-lmms-eval.txt), DATA_ROOT, TASKS, DEVICE, DTYPE, OUTPUT_DIR, LIMIT
# (defaults: python -m recipes.lmms_eval --help). Exits non-zero when lmms-eval wrote no results file.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec "$PYTHON" -m recipes.lmms_eval "$@"
