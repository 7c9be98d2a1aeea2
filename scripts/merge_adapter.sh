#!/usr/bin/env bash
# Merge a training run's adapter into its base: a plain LlavaForConditionalGeneration
# (save_pretrained, safetensors shards, processor included) that loads with no project code.
#   bash scripts/merge_adapter.sh RUN_DIR OUT_DIR [--base BASE_DIR] [--max-shard-size 5GB] [--dtype bf16]
# A base that differs from the run's (architecture or adapted-module shapes) is refused with a
# list of the differences, and so is a base stored quantized (4/8-bit): QLoRA runs merge into their
# unquantized base. Env: BASE = --base; DTYPE=bf16|fp16|fp32 = --dtype, the dtype the base is reloaded
# and merged in (default: bf16 for a QLoRA run, else fp32; bf16 for LLaVA-1.5-7B halves host memory).
set -euo pipefail
# no cd: RUN_DIR / OUT_DIR may be relative to the caller's directory
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup.sh"
if [ "$#" -lt 2 ]; then
  echo "usage: bash scripts/merge_adapter.sh RUN_DIR OUT_DIR [--base BASE_DIR] [--max-shard-size 5GB]" >&2
  exit 2
fi
extra=()
[ -n "${BASE:-}" ] && extra+=(--base "$BASE")
[ -n "${DTYPE:-}" ] && extra+=(--dtype "$DTYPE")
exec "$PYTHON" -m llava_structlora.merge "$@" "${extra[@]}"
