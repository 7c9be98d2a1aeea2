"""`python -m llava_structlora.metrics {vqav2,gqa,caption} ...` -> one JSON object on stdout.

    python -m llava_structlora.metrics vqav2 --questions Q.json --annotations A.json --results R.json \
        [--protocol official|llava]
    python -m llava_structlora.metrics gqa --questions Q.json --results R.json [--protocol official|llava]
    python -m llava_structlora.metrics caption --annotations A.json --results R.json
Add --allow-partial to score the intersection of result and reference ids (counts reported).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from llava_structlora.utils.errors import entry_point


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llava_structlora.metrics", description="Official-rule VQAv2 / GQA / COCO caption scorers."
    )
    sub = p.add_subparsers(dest="task", required=True)
    v = sub.add_parser("vqav2", help="VQAv2 accuracy (official vqaEval.py rules)")
    v.add_argument("--questions", required=True)
    v.add_argument("--annotations", required=True)
    g = sub.add_parser("gqa", help="GQA accuracy (official eval.py rules)")
    g.add_argument("--questions", required=True)
    c = sub.add_parser("caption", help="COCO caption metrics via pycocoevalcap")
    c.add_argument("--annotations", required=True)
    for s in (v, g, c):
        s.add_argument("--results", required=True)
        s.add_argument(
            "--allow-partial",
            action="store_true",
            help="score the ids present in both results and references; report what was left out",
        )
    for s in (v, g):
        s.add_argument("--protocol", choices=("official", "llava"), default="official")
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.task == "vqav2":
        from .vqa import score_vqav2

        return score_vqav2(args.questions, args.annotations, args.results, args.protocol, args.allow_partial)
    if args.task == "gqa":
        from .gqa import score_gqa

        return score_gqa(args.questions, args.results, args.protocol, args.allow_partial)
    from .caption import score_captions

    return score_captions(args.annotations, args.results, args.allow_partial)


@entry_point("metrics")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = run(args)
    for note in out.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
