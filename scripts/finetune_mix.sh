#!/usr/bin/env bash
# Fine-tune LLaVA on a mixture of COCO captions + VQAv2 + GQA (equal thirds, configs/mix.yaml) with StructLoRA
# under DeepSpeed ZeRO-2, export the adapter, validate it on each task's scorer.
#   bash scripts/finetune_mix.sh [extra train flags, e.g. --lora_r 16 --learning_rate 1e-4]
# With no arguments: builds/reuses the offline shapes world + tiny base, trains, prints the scores.
# Precedence: configs/mix[_smoke].yaml < flags < environment variables that are set:
#   MODEL DATA_ROOT OUTPUT_DIR METHOD RANK SEED DATA_FRACTION RESUME ZERO; launcher: NUM_GPUS HOSTFILE
#   MASTER_PORT SMOKE EVAL NO_DEEPSPEED ARCH(llava|next)   (defaults: python -m recipes.finetune --help, docs/training.md)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec "$PYTHON" -m recipes.finetune --task mix "$@"
