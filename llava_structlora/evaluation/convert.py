"""LLaVA answers JSONL -> the official results / submission files.

Results files for scoring keep the raw generated text: the scorer applies the protocol
(`official` or `llava`), so one results file serves both. Submission files (no public answers)
apply the `llava` protocol's processing here, exactly as LLaVA's converters do before upload:
VQAv2 -> EvalAIAnswerProcessor, GQA -> rstrip('.').lower().

    python -m llava_structlora.evaluation.convert --task vqav2 --answers answers.jsonl --out results.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from llava_structlora.utils.errors import entry_point
from llava_structlora.utils.io import atomic_write_json

from .tasks import PROTOCOLS, TASKS, get_task, pad_vqav2_submission  # noqa: F401  (public path)


def to_results(task: str, answers: Sequence[dict], submission: bool = False, protocol: str = "official") -> list[dict]:
    """Official results list for `task` from LLaVA answer records (the task spec's format)."""
    return get_task(task).to_results(answers, submission, protocol)


def read_answers(path: str | Path) -> list[dict]:
    """LLaVA answers JSONL; a torn, non-UTF-8 or incomplete line is an error naming file:line."""
    path, out = Path(path), []
    if not path.is_file():
        raise ValueError(f"answers file not found: {path}")
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 BOM
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{n}: not UTF-8 text (byte offset {e.start} in the line)") from None
            except (json.JSONDecodeError, RecursionError) as e:
                torn = "" if raw.endswith(b"\n") else " (the last line is cut short: an interrupted run?)"
                raise ValueError(f"{path}:{n}: not valid JSON{torn}: {e}") from None
            if not isinstance(rec, dict) or "question_id" not in rec or not isinstance(rec.get("text"), str):
                raise ValueError(f"{path}:{n}: an answer needs 'question_id' and a string 'text', got {str(rec)[:120]}")
            out.append(rec)
    return out


@entry_point("convert")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=sorted(TASKS), required=True)
    p.add_argument("--answers", required=True, help="LLaVA answers JSONL")
    p.add_argument("--out", required=True)
    p.add_argument("--submission", action="store_true", help="apply the protocol's processing (upload file)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="llava")
    args = p.parse_args(argv)
    results = to_results(args.task, read_answers(args.answers), args.submission, args.protocol)
    atomic_write_json(args.out, results, indent=None)
    print(f"wrote {len(results)} results to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
