"""`python -m llava_structlora.evaluation --task vqav2|gqa|coco ...` -> metrics.json + metrics on stdout.

    python -m llava_structlora.evaluation --task vqav2 --split val --model BASE --adapter DIR \
        --data-root DATA_ROOT --output-dir DIR --batch-size 32 --num-gpus 1 --protocol official

Splits without public answers (VQAv2 test-dev, GQA test) write `submission.json` instead of scoring.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from llava_structlora.data.conversation import CONV_TEMPLATES
from llava_structlora.utils.errors import entry_point

from .config import TASKS, EvalConfig


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llava_structlora.evaluation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", choices=sorted(TASKS), required=True)
    p.add_argument("--split", default=None, help="default: vqav2 val, gqa testdev, coco test (Karpathy)")
    p.add_argument("--model", required=True, help="base model dir (save_pretrained), or a merged model")
    p.add_argument("--adapter", default=None, help="PEFT adapter dir, StructLoRA dir, merged model or run dir")
    p.add_argument("--data-root", required=True)
    p.add_argument("--output-dir", required=True)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-gpus", type=int, default=1, help="processes (CPU workers when there is no GPU)")
    p.add_argument("--protocol", choices=("official", "llava"), default="official")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--dtype", default="float32", help="base load dtype: fp32 | bf16 | fp16 (bf16 for 7B on GPUs)")
    p.add_argument("--attn-implementation", default=None, help="sdpa | eager | flash_attention_2")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument(
        "--conv-template",
        "--conv_template",
        dest="conv_template",
        choices=sorted(CONV_TEMPLATES),
        default=None,
        help="conversation format; must match training. Default: the one the adapter's "
        "run.json (or a merged model's merge_info.json) records, else vicuna_v1_nosys (the toy base)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="evaluate only the first N questions of the split (file order; scored on those N)",
    )
    p.add_argument("--model-id", default=None, help="model_id written in the answers (default: adapter dir name)")
    p.add_argument("--no-meteor", dest="meteor", action="store_false", help="coco: skip METEOR (Java, slow)")
    p.add_argument("--clip-weights", default=None, help="coco: local open_clip checkpoint for CLIPScore")
    p.add_argument("--clip-model", default="ViT-B-32", help="open_clip model name of --clip-weights")
    p.add_argument("--overwrite", action="store_true", help="discard answers of a different earlier run")
    return p


@entry_point("evaluation")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    from .run import evaluate

    cfg = EvalConfig(**{k: v for k, v in vars(args).items()})
    metrics = evaluate(cfg)
    from .run import summary

    print(f"[eval] {summary(metrics)}", file=sys.stderr)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
