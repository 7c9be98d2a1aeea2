"""`python -m llava_structlora.evaluation --task vqav2|gqa|coco ...` -> metrics.json + metrics on stdout.

    python -m llava_structlora.evaluation --task vqav2 --split val --model BASE --adapter DIR \
        --data-root DATA_ROOT --output-dir DIR --batch-size 32 --num-gpus 1 --protocol official

Every option is a field of `EvalConfig` (evaluation/config.py), which generates this command line.
Splits without public answers (VQAv2 test-dev, GQA test) write `submission.json` instead of scoring.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from llava_structlora.utils.errors import entry_point

from .config import EvalConfig, add_eval_arguments
from .run import evaluate, summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llava_structlora.evaluation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_eval_arguments(p)
    return p


@entry_point("evaluation")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    metrics = evaluate(EvalConfig(**vars(args)))
    print(f"[eval] {summary(metrics)}", file=sys.stderr)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
