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
    echo "[setup] installing requirements into .venv (first run only, about 2 min: torch's wheels are ~3 GB)" >&2
    _sl_t0=$SECONDS
    # No `pip install --upgrade pip`: the venv's own pip installs these pins, and the upgrade was one more
    # registry round trip (it hangs up to the pip timeout where the network is slow). The filter drops pip's
    # one-line-per-package "Location ... is ignored" notes about an extra index that lacks a package; it is a
    # process substitution, not a pipe, so `set -o pipefail` never sees grep's exit status (a grep in a pipe
    # that dropped every line exited 1 and stopped the first run).
    "$_sl_py" -m pip install -q -r "$_sl_root/requirements.txt" \
      2> >(grep -v -e "is ignored: it is neither a file nor a directory" >&2) >&2 \
      || { echo "[setup] pip install -r requirements.txt failed" >&2; return 1 2>/dev/null || exit 1; }
    echo "[setup] installed the requirements into .venv in $((SECONDS - _sl_t0)) s" >&2
    unset _sl_t0
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
