#!/usr/bin/env bash
# Evaluate a merged model with lmms-eval on our VQAv2 / GQA / COCO splits, scored by lmms-eval's own code.
#   bash eval/lmms_eval.sh MERGED_DIR [extra lmms_eval args, e.g. --limit 20]
# MERGED_DIR: the output of scripts/merge_adapter.sh (or any llava-hf model folder with a chat template).
# Install lmms-eval once, into a separate venv (the tested versions: lmms-eval on top of requirements.txt):
#   python -m venv /opt/lmms && /opt/lmms/bin/pip install -r requirements.txt -r requirements-lmms-eval.txt
# Env: LMMS_PYTHON (that venv's python, e.g. /opt/lmms/bin/python), DATA_ROOT, TASKS, DEVICE, DTYPE, OUTPUT_DIR,
# LIMIT (defaults: python -m recipes.lmms_eval --help). Exits non-zero when lmms-eval wrote no results file
# or no scores for a requested task.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec "$PYTHON" -m recipes.lmms_eval "$@"
