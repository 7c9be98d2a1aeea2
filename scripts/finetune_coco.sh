#!/usr/bin/env bash
# Fine-tune LLaVA on coco with StructLoRA under DeepSpeed ZeRO-2, export the adapter, validate it.
#   bash scripts/finetune_coco.sh [extra train flags, e.g. --learning_rate 1e-4]
# With no arguments: builds/reuses the offline shapes world + tiny base, trains, prints the scores.
# Env overrides: MODEL DATA_ROOT OUTPUT_DIR METHOD RANK SEED DATA_FRACTION NUM_GPUS HOSTFILE
#                MASTER_PORT ZERO SMOKE RESUME EVAL NO_DEEPSPEED ARCH (llava|next)   (see docs/training.md)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export METHOD="${METHOD:-structlora}" RANK="${RANK:-8}" SEED="${SEED:-0}" DATA_FRACTION="${DATA_FRACTION:-1}"
export ZERO="${ZERO:-zero_configs/zero2.json}" SMOKE="${SMOKE:-0}" RESUME="${RESUME:-auto}" EVAL="${EVAL:-1}"
exec "$PYTHON" -m llava_structlora.train.pipeline --task coco "$@"
