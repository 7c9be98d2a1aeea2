"""The one Python call of eval/lmms_eval.sh: our splits, evaluated by lmms-eval's own code.

    python -m recipes.lmms_eval MERGED_DIR [extra lmms_eval args, e.g. --limit 20]

1. export our VQAv2 / GQA / COCO splits as lmms-eval tasks (llava_structlora.evaluation.lmms_export);
2. run ``lmms_eval --model llava_hf`` on the merged model, in LMMS_PYTHON (lmms-eval pins its own
   dependencies, so it lives in a separate environment: requirements-lmms-eval.txt);
3. fail when lmms-eval wrote no results file, or one without scores for a requested task: lmms-eval
   itself can exit 0 after a failure.

Environment: LMMS_PYTHON (default: `python` on PATH if it imports lmms_eval), DATA_ROOT
[artifacts/data/default], TASKS [vqav2 gqa coco], DEVICE [cuda if visible, else cpu], DTYPE [float32],
OUTPUT_DIR [outputs/lmms_eval/<model dir name>], LIMIT [all questions].
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from llava_structlora.evaluation.lmms_export import LMMS_TASKS, export_all
from llava_structlora.utils.errors import UserError, entry_point
from llava_structlora.utils.jsonio import read_json
from recipes.env import env
from recipes.layout import RepoLayout

# The one tested install (docs/evaluation.md, eval/lmms_eval.sh and requirements-lmms-eval.txt say the same,
# tests/recipes/test_lmms_eval.py checks it): lmms-eval on top of the pinned requirements. requirements-lmms-eval.txt
# alone lets pip pick untested versions (transformers 5.25 / peft 0.22 when it was written).
INSTALL = "python -m venv /opt/lmms && /opt/lmms/bin/pip install -r requirements.txt -r requirements-lmms-eval.txt"


def lmms_python() -> str:
    """A python that imports lmms_eval, or a UserError saying how to get one."""
    py = env("LMMS_PYTHON", "python")
    if subprocess.run([py, "-c", "import lmms_eval"], capture_output=True).returncode != 0:
        raise UserError(
            f"{py} cannot import lmms_eval; install it into a separate venv and set LMMS_PYTHON to its python: "
            f"`{INSTALL}` then LMMS_PYTHON=/opt/lmms/bin/python (docs/evaluation.md)"
        )
    return py


def missing_tasks(results: Path, tasks: list[str]) -> list[str]:
    """Requested lmms-eval tasks without scores in its results JSON (lmms-eval skips a task it cannot run
    with a log line and still exits 0)."""
    data = read_json(results, "lmms-eval results")
    scored = data.get("results") if isinstance(data, dict) else None
    if not isinstance(scored, dict):
        raise UserError(f"{results}: no 'results' object (not an lmms-eval results file?)")
    return [t for t in tasks if not scored.get(t)]


def newest_results(results: Path, since: float) -> Path | None:
    """lmms-eval's results JSON written after `since` (its COCO submission file also ends in _results.json)."""
    found = [p for p in results.rglob("*_results.json") if "submissions" not in p.parts and p.stat().st_mtime >= since]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


@entry_point("lmms_eval")
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if not argv or argv[0].startswith("-"):
        raise UserError("usage: bash eval/lmms_eval.sh MERGED_DIR [extra lmms_eval args]")
    model = Path(argv.pop(0)).resolve()
    if not (model / "config.json").is_file():
        raise UserError(f"{model}/config.json not found (pass a merged model dir: scripts/merge_adapter.sh)")
    layout = RepoLayout.checkout()
    py = lmms_python()
    data_root = Path(env("DATA_ROOT", str(layout.data("default"))))
    out = Path(env("OUTPUT_DIR", str(layout.outputs / "lmms_eval" / model.name)))
    tasks = env("TASKS", " ".join(LMMS_TASKS)).split()
    limit = env("LIMIT", "")
    import torch

    device = env("DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
    infos = export_all(str(data_root), str(out / "tasks"), tasks, int(limit) if limit else None)
    (out / "results").mkdir(parents=True, exist_ok=True)
    started = time.time()
    # batch size 1: llava_hf asserts it; device_map pins the whole model to one device (no accelerate sharding)
    cmd = [py, "-m", "lmms_eval", "--model", "llava_hf",
           "--model_args", f"pretrained={model},device={device},device_map={device},dtype={env('DTYPE', 'float32')}",
           "--tasks", ",".join(i["task"] for i in infos), "--include_path", str(out / "tasks"),
           "--batch_size", "1", "--log_samples", "--output_path", str(out / "results"), *argv]  # fmt: skip
    rc = subprocess.run(cmd, cwd=out, env={**os.environ, "HF_DATASETS_OFFLINE": "1"}).returncode
    results = newest_results(out / "results", started - 1)
    if results is None:
        print(f"[lmms_eval] error: lmms-eval (exit {rc}) wrote no results file under {out / 'results'} "
              "(it can exit 0 after a failure): read its log above", file=sys.stderr)  # fmt: skip
        return 1
    missing = missing_tasks(results, [i["task"] for i in infos])
    if missing:
        print(f"[lmms_eval] error: {results} has no scores for {', '.join(missing)} (lmms-eval exit {rc}): "
              "read its log above", file=sys.stderr)  # fmt: skip
        return 1
    print(f"lmms-eval results: {results}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
