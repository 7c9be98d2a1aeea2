#!/usr/bin/env bash
# Idempotent environment bootstrap; every recipe and eval script sources this file.
#   source scripts/setup.sh
# Uses the active Python when it already satisfies requirements.txt, otherwise creates
# ./.venv and installs the pinned requirements into it. A second call returns in seconds.
_sl_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_sl_py="${PYTHON:-python3}"
if ! "$_sl_py" "$_sl_root/scripts/check_env.py" "$_sl_root/requirements.txt" >/dev/null 2>&1; then
  if [ ! -x "$_sl_root/.venv/bin/python" ]; then
    echo "[setup] creating $_sl_root/.venv" >&2
    "$_sl_py" -m venv "$_sl_root/.venv" || { echo "[setup] python3 -m venv failed" >&2; return 1 2>/dev/null || exit 1; }
  fi
  _sl_py="$_sl_root/.venv/bin/python"
  if ! "$_sl_py" "$_sl_root/scripts/check_env.py" "$_sl_root/requirements.txt" >/dev/null 2>&1; then
    echo "[setup] installing requirements into .venv (first run only; torch comes from the local wheel cache)" >&2
    "$_sl_py" -m pip install -q --upgrade pip >&2 || true
    # No grep filter here: under the recipes' `set -o pipefail` a grep that drops every line exits 1
    # and stopped the first run.
    "$_sl_py" -m pip install -q -r "$_sl_root/requirements.txt" >&2 \
      || { echo "[setup] pip install -r requirements.txt failed" >&2; return 1 2>/dev/null || exit 1; }
  fi
  # shellcheck disable=SC1091
  source "$_sl_root/.venv/bin/activate"
fi
export PYTHON="$_sl_py"
export PYTHONPATH="$_sl_root${PYTHONPATH:+:$PYTHONPATH}"
# 2 shared cores: busy-waiting OpenMP threads stall steps for seconds (docs/design.md §5).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
# Nothing is ever downloaded at run time.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export HF_HUB_DISABLE_TELEMETRY=1 DS_BUILD_OPS=0
unset _sl_py
