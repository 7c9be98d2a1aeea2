"""Compare an lmms-eval run (eval/lmms_eval.sh) with our evaluator, question by question.

    python -m recipes.lmms_agreement --lmms OUT/results --tasks OUT/tasks \
        --ours vqav2=EVAL_DIR gqa=EVAL_DIR coco=EVAL_DIR --data_root DATA_ROOT [--record NAME]

For every task: how many answers are identical strings, the per-question scores of lmms-eval
(its own ``process_results`` / metric) next to ours under both protocols, and the aggregate
scores side by side. ``--record`` writes the table into docs/RESULTS.md via ``record_result``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from llava_structlora.evaluation.config import TASKS


def _newest(paths: list[Path], what: str) -> Path:
    if not paths:
        raise FileNotFoundError(f"no {what} found: did lmms-eval run with --log_samples and write results?")
    return max(paths, key=lambda p: p.stat().st_mtime)


def exported_ids(tasks_dir: Path, name: str, split: str) -> list[str]:
    """Question ids of the exported split in row order (lmms-eval's doc_id is the row index)."""
    import datasets

    ds = datasets.load_from_disk(str(tasks_dir / name / "data"))[split]
    return [str(q) for q in ds["id" if "id" in ds.column_names else "question_id"]]  # coco: our id = image id


def lmms_samples(results_dir: Path, task: str, ids: list[str]) -> dict[str, dict]:
    """question_id -> logged sample of lmms-eval's newest ``*_samples_<task>.jsonl``."""
    path = _newest(list(results_dir.rglob(f"*_samples_{task}.jsonl")), f"samples file for {task} in {results_dir}")
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out[ids[int(rec["doc_id"])]] = rec
    return out


def lmms_scores(results_dir: Path) -> dict[str, dict]:
    found = [p for p in results_dir.rglob("*_results.json") if "submissions" not in p.parts]  # coco writes one
    path = _newest(found, f"results file in {results_dir}")
    return json.loads(path.read_text())["results"]


def _answer(rec: dict) -> str:
    resp = rec["filtered_resps"]  # a string (0.7.3) or a list of them
    while isinstance(resp, list):
        resp = resp[0]
    return resp


def our_answers(eval_dir: Path) -> dict[str, str]:
    rows = [json.loads(x) for x in (eval_dir / "answers.jsonl").read_text().splitlines() if x.strip()]
    return {str(r["question_id"]): r["text"] for r in rows}


def our_question_scores(task: str, data_root: Path, split: str, answers: dict[str, str]) -> dict[str, dict]:
    """qid -> {protocol: score in [0, 1]} with our scorers' per-question rules."""
    from llava_structlora.metrics.gqa import llava_gqa_prediction, load_gqa_questions
    from llava_structlora.metrics.vqa import load_vqa_annotations, vqa_question_accuracy
    from llava_structlora.metrics.vqa_normalize import evalai_answer_processor

    refs = TASKS[task].references(data_root, split)
    if task == "vqav2":
        anns = load_vqa_annotations(refs[1])
        return {
            q: {
                "official": vqa_question_accuracy(a, anns[int(q)][1]),
                "llava": vqa_question_accuracy(evalai_answer_processor(a), anns[int(q)][1]),
            }
            for q, a in answers.items()
        }
    qs = load_gqa_questions(refs[0])
    return {
        q: {"official": float(a == qs[q]["answer"]), "llava": float(llava_gqa_prediction(a) == qs[q]["answer"])}
        for q, a in answers.items()
    }


def task_agreement(
    task: str, name: str, split: str, lmms_dir: Path, tasks_dir: Path, eval_dir: Path, data_root: Path
) -> dict:
    samples = lmms_samples(lmms_dir, name, exported_ids(tasks_dir, name, split))
    ours = our_answers(eval_dir)
    common = sorted(set(samples) & set(ours))
    same = [q for q in common if _answer(samples[q]) == ours[q]]
    out: dict[str, Any] = {
        "task": name,
        "n_lmms": len(samples),
        "n_ours": len(ours),
        "n_common": len(common),
        "identical_answers": len(same),
        "differing": [
            {"question_id": q, "lmms": _answer(samples[q]), "ours": ours[q]} for q in common if q not in same
        ][:10],
    }
    ours_metrics = json.loads((eval_dir / "metrics.json").read_text())
    scores = lmms_scores(lmms_dir).get(name, {})
    out["lmms_scores"] = {k.split(",")[0]: v for k, v in scores.items() if isinstance(v, (int, float))}
    out["our_scores"] = {
        k: v
        for k, v in ours_metrics.items()
        if isinstance(v, (int, float)) and (k[0].isupper() or k in ("overall", "accuracy"))
    }
    if task != "coco":
        per_q = our_question_scores(task, data_root, split, {q: ours[q] for q in common})
        lm = {q: float(samples[q]["exact_match"]) for q in common}
        for proto in ("official", "llava"):
            out[f"equal_question_scores_{proto}"] = sum(abs(lm[q] - per_q[q][proto]) < 1e-9 for q in common)
            out[f"ours_{proto}_percent"] = 100 * sum(per_q[q][proto] for q in common) / max(len(common), 1)
        out["lmms_percent"] = 100 * sum(lm.values()) / max(len(common), 1)
    return out


def markdown(rows: list[dict]) -> str:
    lines = [
        "| task | questions | identical answers | equal per-question scores (ours official / llava) "
        "| lmms-eval score | ours official | ours llava |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "lmms_percent" in r:
            lines.append(
                f"| {r['task']} | {r['n_common']} | {r['identical_answers']} | "
                f"{r['equal_question_scores_official']} / {r['equal_question_scores_llava']} | "
                f"{r['lmms_percent']:.2f} | {r['ours_official_percent']:.2f} | "
                f"{r['ours_llava_percent']:.2f} |"
            )
        else:
            lm, ou = r["lmms_scores"], r["our_scores"]
            pairs = ", ".join(
                f"{m} {lm.get('coco_' + m, float('nan')):.4f} / {ou.get(m, float('nan')):.4f}"
                for m in ("CIDEr", "Bleu_4", "ROUGE_L", "METEOR")
                if m in ou
            )
            lines.append(
                f"| {r['task']} | {r['n_common']} | {r['identical_answers']} | (corpus metrics; lmms-eval "
                f"/ ours: {pairs}) | | | |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lmms", required=True, help="lmms-eval --output_path")
    ap.add_argument("--tasks", required=True, help="the exporter's output dir (tasks.json)")
    ap.add_argument("--ours", nargs="+", required=True, help="TASK=EVAL_DIR of our evaluator (answers.jsonl)")
    ap.add_argument("--data_root", required=True)
    ap.add_argument("--record", help="record_result name (docs/results/NAME.json)")
    ap.add_argument("--title", default="lmms-eval vs our evaluator")
    ap.add_argument("--note", default="", help="a line shown under the table (what model, what caveat)")
    args = ap.parse_args(argv)
    infos = {i["ours"]: i for i in json.loads((Path(args.tasks) / "tasks.json").read_text())}
    rows = []
    for spec in args.ours:
        task, _, d = spec.partition("=")
        info = infos[task]
        rows.append(
            task_agreement(
                task, info["task"], info["split"], Path(args.lmms), Path(args.tasks), Path(d), Path(args.data_root)
            )
        )
    print(json.dumps(rows, indent=1))
    print(markdown(rows))
    if args.record:
        from recipes.results import record_result

        body = markdown(rows) + (f"\n\n{args.note}" if args.note else "")
        record_result(args.record, args.title, {"tasks": rows, "note": args.note}, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
