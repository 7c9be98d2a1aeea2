"""Per question family: the untuned base and LoRA against the family's answer-prior chance.

    python -m experiments.families [--world-seed N]

A headline score can rise because the adapter learnt the task's *answer format* (say, "red" or
"blue" for "Is the circle red or blue?", which the base answers "yes" to) while every family stays
at its answer-prior chance. Such a gain tells nothing about which directions an adapter picks. This
module scores the cached answers of the main table's LoRA runs and of the untuned base per family
(the shapes world records the family of every question id in ``raw/shapes_meta.json``, and the
chance level of each family in ``raw/stats.json``: the accuracy of always answering the train
split's majority answer), with the official per-question rules (``llava_structlora.metrics``).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from llava_structlora.metrics.gqa import load_gqa_questions
from llava_structlora.metrics.vqa import load_vqa_annotations, vqa_question_accuracy

TASKS = ("vqav2", "gqa")


def _per_question(eval_root: Path, task: str, results: Path) -> dict[str, float]:
    """question id -> accuracy in [0, 1] of a test-split results file (official rules)."""
    split_dir = eval_root / task
    rows = json.loads(results.read_text())
    if task == "vqav2":
        anns = load_vqa_annotations(split_dir / "test_annotations.json")
        return {str(r["question_id"]): vqa_question_accuracy(r["answer"], anns[r["question_id"]][1]) for r in rows}
    qs = load_gqa_questions(split_dir / "test_questions.json")
    return {str(r["questionId"]): float(r["prediction"] == qs[str(r["questionId"])]["answer"]) for r in rows}


def family_accuracy(data_root: Path, eval_root: Path, task: str, results: Path) -> dict[str, float]:
    """family -> accuracy (%) of one results file on the test split of the derived `eval_root`."""
    family = json.loads((data_root / "raw" / "shapes_meta.json").read_text())["question_family"]
    by_family: dict[str, list[float]] = defaultdict(list)
    for qid, acc in _per_question(eval_root, task, results).items():
        by_family[family[qid]].append(acc)
    return {f: 100.0 * sum(v) / len(v) for f, v in sorted(by_family.items())}


def chance(data_root: Path, task: str) -> dict[str, float]:
    """family -> answer-prior chance (%) as the world's stats compute it (VQA: the prior's VQA accuracy)."""
    stats = json.loads((data_root / "raw" / "stats.json").read_text())["chance"][task]
    key = "prior_vqa_acc" if task == "vqav2" else "chance"
    return {k.split("/", 1)[1]: 100.0 * v[key] for k, v in stats.items() if k.startswith("family/")}


def table(data_root: Path, eval_root: Path, task: str, base_results: Path, lora_results: list[Path]) -> dict[str, Any]:
    """Per family: chance, base, LoRA mean ± std over seeds, and whether LoRA clears chance by 5 points."""
    base = family_accuracy(data_root, eval_root, task, base_results)
    lora = [family_accuracy(data_root, eval_root, task, p) for p in lora_results]
    ch = chance(data_root, task)
    rows = {}
    for fam in base:
        vals = [d[fam] for d in lora if fam in d]
        mean = statistics.fmean(vals) if vals else float("nan")
        std = statistics.stdev(vals) if len(vals) > 1 else float("nan")
        rows[fam] = {"chance": ch.get(fam, float("nan")), "base": base[fam], "lora_mean": mean, "lora_std": std}
        rows[fam]["lora_above_chance"] = bool(mean - rows[fam]["chance"] >= 5.0)
    return rows


def markdown(task: str, rows: dict[str, dict[str, Any]], n: int) -> str:
    lines = [
        f"**{task}**, test split, per question family (accuracy %; LoRA over n={n} reporting seeds):",
        "",
        "| family | answer-prior chance | untuned base | LoRA r=8 | LoRA − chance |",
        "|---|---|---|---|---|",
    ]
    for fam, r in rows.items():
        lines.append(
            f"| {fam} | {r['chance']:.1f} | {r['base']:.1f} | {r['lora_mean']:.1f} ± {r['lora_std']:.1f} | "
            f"{r['lora_mean'] - r['chance']:+.1f} |"
        )
    above = [f for f, r in rows.items() if r["lora_above_chance"]]
    lines += ["", f"Families where LoRA beats chance by >= 5 points: {', '.join(above) or 'none'}."]
    return "\n".join(lines)
