#!/usr/bin/env bash
# Evaluate a fine-tuned adapter on COCO captions (Karpathy test: CIDEr, BLEU-4, METEOR, ROUGE-L).
#   bash eval/coco_caption.sh [--limit N --split S --batch-size B ...]
# With no arguments: the newest run of scripts/finetune_coco.sh under outputs/, on the embedded
# shapes world; prints the scores and writes metrics.json (path printed).
# Env: MODEL ADAPTER(=dir|none) DATA_ROOT SPLIT PROTOCOL(=official|llava) BATCH_SIZE NUM_GPUS OUTPUT_DIR SMOKE
#      DTYPE(=bf16|fp16|fp32; default bf16 on GPUs, fp32 on CPU) ATTN_IMPLEMENTATION(=sdpa|eager|flash_attention_2)
# CLIP_WEIGHTS=<local open_clip checkpoint> [CLIP_MODEL=ViT-B-32] adds CLIPScore (skipped with a note otherwise)
# Flags: every option of python -m llava_structlora.evaluation (e.g. --limit 100 --batch-size 8; set env vars win);
# `bash eval/<task>.sh --help` lists them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec "$PYTHON" -m recipes.evaluate --task coco "$@"
