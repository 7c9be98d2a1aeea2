"""Does fine-tuning mean something on the shapes world? The untuned base vs the LoRA r=8 seeds.

    python -m experiments.base_margin [--suite full]

Scores the suite's base snapshot (no adapter) on the suite's test splits with the real evaluation
code, and compares it with the cached LoRA r=8 runs of the main table (tuned lr, 3 seeds): the gain
must be many times the seed-to-seed std on CIDEr and on VQA accuracy (issue 4's bar for the base).
Run after `python -m experiments main`; records `experiments_base_margin` in docs/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from llava_structlora.evaluation.config import EvalConfig
from llava_structlora.evaluation.run import evaluate
from recipes.layout import RepoLayout
from recipes.results import record_result

from .suite import METRIC, METRIC_SCALE

ROOT = RepoLayout.checkout().outputs / "experiments"


def lora_test_scores(results: Path, task: str) -> dict[str, list[float]]:
    """Test scores of the main-table LoRA r=8 full-data runs, grouped by lr."""
    by_lr: dict[str, list[float]] = {}
    for path in sorted(results.glob(f"{task}-lora-r8-lr*-f1-s*.json")):
        rec = json.loads(path.read_text())
        if rec["spec"].get("overrides"):
            continue
        by_lr.setdefault(str(rec["spec"]["lr"]), []).append(float(rec["test"]["score"]))
    return by_lr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default="full")
    ap.add_argument("--tasks", nargs="+", default=["coco", "vqav2", "gqa"])
    args = ap.parse_args()
    suite = ROOT / args.suite
    rows, data = [], {}
    for task in args.tasks:
        runs = {lr: s for lr, s in lora_test_scores(suite / "results", task).items() if len(s) >= 3}
        if not runs:
            raise SystemExit(f"{suite}/results: no 3-seed LoRA r=8 runs for {task}; run `python -m experiments main` first")
        lr, scores = max(runs.items(), key=lambda kv: len(kv[1]))
        cfg = EvalConfig(task=task, model=str(suite / "base"), data_root=str(suite / "eval_data"), split="test",
                         output_dir=str(suite / "base_eval" / task), overwrite=True, meteor=False)
        base = float(evaluate(cfg)[METRIC[task]]) * METRIC_SCALE[task]
        mean, std = statistics.mean(scores), statistics.stdev(scores)
        ratio = (mean - base) / std if std > 0 else float("inf")
        data[task] = {"base": base, "lora_lr": float(lr), "lora_scores": scores, "gain": mean - base, "std": std}
        rows.append(f"| {task} ({METRIC[task]}) | {base:.2f} | {mean:.2f} ± {std:.2f} (lr {lr}) | "
                    f"{mean - base:+.2f} | {ratio:.1f} |")
    md = "\n".join(["| task (test split) | untuned base | LoRA r=8, 3 seeds | gain | gain / seed std |",
                    "|---|---|---|---|---|", *rows])
    md += ("\n\nCIDEr x100; VQA = official VQAv2 accuracy (%); GQA = exact match (%). LoRA runs: the main table's "
           "cached runs (150 steps, batch 16, lr tuned on val).")
    record_result("experiments_base_margin", "Experiment: the untuned base vs LoRA (is there room to fine-tune?)",
                  data, md, seeds=[0, 1, 2])
    print(md)


if __name__ == "__main__":
    main()
