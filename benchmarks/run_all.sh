#!/usr/bin/env bash
# Every benchmark, one after the other (never two at once: they time the CPU).
#   bash benchmarks/run_all.sh            full runs, each records docs/results/<name>.json + docs/RESULTS.md
#   bash benchmarks/run_all.sh --quick    CI-size smoke runs (print only, record nothing)
# Env: THREADS (default 2). A failing benchmark does not stop the others; the exit code says
# whether all passed. See docs/benchmarks.md for what each one measures.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh || exit 1
QUICK=()
[ "${1:-}" = "--quick" ] && QUICK=(--quick)
THREADS="${THREADS:-2}"
failed=()

run() {
  echo "=== $(date -u +%H:%M:%S) $*"
  local t0=$SECONDS
  if "$PYTHON" "$@"; then echo "=== ok ($((SECONDS - t0)) s): $1"; else failed+=("$1"); echo "=== FAILED: $*" >&2; fi
}

run benchmarks/train_overhead.py --threads "$THREADS" "${QUICK[@]}"
# the same at real width with activation checkpointing off and on (record: train_overhead_ckpt)
run benchmarks/train_overhead.py --threads "$THREADS" --stacks realistic --grad-ckpt both "${QUICK[@]}"
run benchmarks/inference.py --threads "$THREADS" "${QUICK[@]}"
run benchmarks/scaling.py --threads "$THREADS" "${QUICK[@]}"
run benchmarks/gpu_7b.py   # prints SKIPPED and exits 0 without a CUDA GPU
if [ ${#QUICK[@]} -eq 0 ]; then run benchmarks/arch_meta.py --record; else run benchmarks/arch_meta.py; fi
# the reliability suite's outcome as a RESULTS.md section (full mode only: it includes the crash tests)
[ ${#QUICK[@]} -eq 0 ] && run benchmarks/reliability_report.py
# Benchmarks owned by other issues, when present (layer micro-benchmark; eval throughput).
for extra in benchmarks/layer_overhead.py benchmarks/eval_throughput.py; do
  if [ -f "$extra" ]; then
    if [ ${#QUICK[@]} -gt 0 ] && grep -q -- "--quick" "$extra"; then run "$extra" --quick
    elif [ ${#QUICK[@]} -eq 0 ]; then run "$extra" --record
    else echo "=== skip $extra in --quick mode (it has no --quick flag)"; fi
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "[run_all] failed: ${failed[*]}" >&2
  exit 1
fi
echo "[run_all] all benchmarks finished; results in docs/RESULTS.md"
