#!/usr/bin/env bash
# Evaluate a fine-tuned adapter on GQA (testdev balanced).
#   bash eval/gqa.sh [--limit N --split S --batch-size B ...]
# With no arguments: the newest run of scripts/finetune_gqa.sh under outputs/, on the embedded
# shapes world; prints the scores and writes metrics.json (path printed).
# Env: MODEL ADAPTER(=dir|none) DATA_ROOT SPLIT PROTOCOL(=official|llava) BATCH_SIZE NUM_GPUS OUTPUT_DIR SMOKE
#      DTYPE(=bf16|fp16|fp32; default bf16 on GPUs, fp32 on CPU) ATTN_IMPLEMENTATION(=sdpa|eager|flash_attention_2)
# Flags: every option of python -m llava_structlora.evaluation (e.g. --limit 100 --batch-size 8; set env vars win);
# `bash eval/<task>.sh --help` lists them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec "$PYTHON" -m recipes.evaluate --task gqa "$@"
