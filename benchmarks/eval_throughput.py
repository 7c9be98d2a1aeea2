"""Throughput of batched greedy evaluation vs a batch-1 loop, same model, same questions, one run.

    python benchmarks/eval_throughput.py [--model artifacts/base/default] [--data-root artifacts/data/default] \
        [--task vqav2 --split val --n 160 --batch-size 64 --max-new-tokens 16 --repeats 3 --threads 2]

Both paths are `generate_to_file` (the code the evaluation runs): batch-1 is simply batch_size=1.
The two are timed alternately `--repeats` times after a warm-up and the median is reported, so
that load from other processes on a shared CPU hits both alike. Also checks the answers agree.
Prints one JSON object (and a markdown row for docs/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llava_structlora.data import resolve_image_folder  # noqa: E402
from llava_structlora.evaluation.config import TASKS  # noqa: E402
from llava_structlora.evaluation.generate import generate_to_file, load_questions, read_jsonl  # noqa: E402
from llava_structlora.evaluation.load import load_model  # noqa: E402


def timed_run(model, processor, questions, batch_size: int, max_new_tokens: int) -> tuple[float, dict]:
    """Seconds to answer all questions from scratch, and the answers."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "answers.jsonl"
        t0 = time.perf_counter()
        generate_to_file(model, processor, questions, out, batch_size, max_new_tokens, "bench")
        dt = time.perf_counter() - t0
        return dt, {r["question_id"]: r["text"] for r in read_jsonl(out)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "artifacts" / "base" / "default"))
    p.add_argument("--adapter", default=None)
    p.add_argument("--data-root", default=str(ROOT / "artifacts" / "data" / "default"))
    p.add_argument("--task", default="vqav2", choices=sorted(TASKS))
    p.add_argument("--split", default=None)
    p.add_argument("--n", type=int, default=160, help="questions (the first n of the split)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--record", action="store_true", help="write docs/results/eval_throughput.json + RESULTS.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = TASKS[args.task]
    split, max_new = args.split or spec.default_split, args.max_new_tokens or spec.max_new_tokens
    qfile = spec.questions_jsonl(Path(args.data_root), split)
    questions = load_questions(qfile, resolve_image_folder(qfile))[: args.n]
    model, processor = load_model(args.model, args.adapter)
    timed_run(model, processor, questions[: args.batch_size], args.batch_size, max_new)  # warm-up
    batched, single, agree = [], [], None
    for _ in range(args.repeats):
        tb, ab = timed_run(model, processor, questions, args.batch_size, max_new)
        ts, as_ = timed_run(model, processor, questions, 1, max_new)
        batched.append(tb)
        single.append(ts)
        agree = sum(ab[k] == as_[k] for k in ab) if agree is None else agree
    n = len(questions)
    tb, ts = statistics.median(batched), statistics.median(single)
    stamp = Path(args.model) / "build_stamp.json"  # toy bases record their preset and build key
    meta = json.loads(stamp.read_text()) if stamp.is_file() else {}
    out = {
        "task": args.task,
        "split": split,
        "model": args.model,
        "n": n,
        "model_preset": (meta.get("preset") or {}).get("name"),
        "model_build_key": meta.get("key"),
        "n_params": sum(p.numel() for p in model.parameters()),
        "batch_size": args.batch_size,
        "max_new_tokens": max_new,
        "threads": args.threads,
        "repeats": args.repeats,
        "batched_items_per_s": round(n / tb, 2),
        "batch1_items_per_s": round(n / ts, 2),
        "speedup": round(ts / tb, 2),
        "answers_equal": f"{agree}/{n}",
        "batched_s": [round(x, 3) for x in batched],
        "batch1_s": [round(x, 3) for x in single],
    }
    print(json.dumps(out))
    table = (
        "| task / split | model | n | batch | batch-1 items/s | batched items/s | speedup | answers equal |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {args.task} {split} | {Path(args.model).name} | {n} | {args.batch_size} "
        f"| {out['batch1_items_per_s']} | {out['batched_items_per_s']} | {out['speedup']}x "
        f"| {out['answers_equal']} |\n\nMedian of {args.repeats} alternating timings, {args.threads} threads, "
        f"max_new_tokens {max_new}; both paths are `generate_to_file` (batch-1 = batch_size 1)."
    )
    print(table, file=sys.stderr)
    if args.record:
        from recipes.results import record_result

        record_result("eval_throughput", "Evaluation throughput: batched greedy vs a batch-1 loop", out, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
