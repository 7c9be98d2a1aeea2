#!/usr/bin/env bash
# Package a training run as a release folder: stock PEFT adapter (base_model_name_or_path set to
# the base), model card README.md, run.json, metrics.json, SHA256SUMS.
#   bash scripts/release_adapter.sh RUN_DIR OUT_DIR [--base-id llava-hf/llava-1.5-7b-hf] [--push REPO_ID]
# --push only documents the huggingface_hub upload (PUSH.md + printed commands): nothing is uploaded.
set -euo pipefail
# no cd: RUN_DIR / OUT_DIR may be relative to the caller's directory
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup.sh"
if [ "$#" -lt 2 ]; then
  echo "usage: bash scripts/release_adapter.sh RUN_DIR OUT_DIR [--base-id HUB_ID] [--push REPO_ID]" >&2
  exit 2
fi
exec "$PYTHON" -m llava_structlora.release "$@"
