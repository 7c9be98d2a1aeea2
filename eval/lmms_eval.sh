#!/usr/bin/env bash
# Evaluate a merged model with lmms-eval on our VQAv2 / GQA / COCO splits, scored by lmms-eval's own code.
#   bash eval/lmms_eval.sh MERGED_DIR [extra lmms_eval args, e.g. --limit 20]
# MERGED_DIR: the output of scripts/merge_adapter.sh (or any llava-hf model folder with a chat template).
# Env: LMMS_PYTHON  a python with lmms-eval installed (default: `python` on PATH if it imports lmms_eval;
#                   install with: python -m venv /opt/lmms && /opt/lmms/bin/pip install -r requirements-lmms-eval.txt)
#      DATA_ROOT (artifacts/data/default)  TASKS (vqav2 gqa coco)  DEVICE (cuda if visible, else cpu)
#      DTYPE (float32)  OUTPUT_DIR (outputs/lmms_eval/<model dir name>)  LIMIT (all questions)
# Exits non-zero when lmms-eval wrote no results file: lmms-eval itself can exit 0 after a failure.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
if [ "$#" -lt 1 ]; then
  echo "usage: bash eval/lmms_eval.sh MERGED_DIR [extra lmms_eval args]" >&2
  exit 2
fi
MODEL_DIR="$(cd "$1" && pwd)"; shift
[ -f "$MODEL_DIR/config.json" ] || { echo "error: $MODEL_DIR/config.json not found (pass a merged model dir)" >&2; exit 2; }
LMMS_PYTHON="${LMMS_PYTHON:-python}"
if ! "$LMMS_PYTHON" -c "import lmms_eval" 2>/dev/null; then
  echo "error: $LMMS_PYTHON cannot import lmms_eval; set LMMS_PYTHON to a python that has it" \
       "(pip install -r requirements-lmms-eval.txt in a separate venv, see docs/evaluation.md)" >&2
  exit 2
fi
DATA_ROOT="${DATA_ROOT:-$ROOT/artifacts/data/default}"
OUT="${OUTPUT_DIR:-$ROOT/outputs/lmms_eval/$(basename "$MODEL_DIR")}"
DEVICE="${DEVICE:-$("$PYTHON" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}"
limit=(); [ -n "${LIMIT:-}" ] && limit=(--limit "$LIMIT")
# shellcheck disable=SC2086
names="$("$PYTHON" -m llava_structlora.evaluation.lmms_export --data_root "$DATA_ROOT" --out "$OUT/tasks" \
         --tasks ${TASKS:-vqav2 gqa coco} "${limit[@]}" | tail -n 1)"
stamp="$OUT/.started"; mkdir -p "$OUT/results"; touch "$stamp"
# batch size 1: llava_hf asserts it; device_map pins the whole model to one device (no accelerate sharding)
(cd "$OUT" && HF_DATASETS_OFFLINE=1 "$LMMS_PYTHON" -m lmms_eval --model llava_hf \
  --model_args "pretrained=$MODEL_DIR,device=$DEVICE,device_map=$DEVICE,dtype=${DTYPE:-float32}" \
  --tasks "$names" --include_path "$OUT/tasks" --batch_size 1 --log_samples \
  --output_path "$OUT/results" "$@")
results="$(find "$OUT/results" -name '*_results.json' -not -path '*/submissions/*' -newer "$stamp" | sort | tail -n 1)"
if [ -z "$results" ]; then
  echo "error: lmms-eval wrote no results file under $OUT/results (it can exit 0 after a failure): read its log above" >&2
  exit 1
fi
echo "lmms-eval results: $results"
