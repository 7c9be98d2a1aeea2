"""Greedy answers from a model loaded with STOCK transformers + PEFT only (run as a fresh process).

    python stock_generate.py --model NAME=DIR[+ADAPTER_DIR] [--model ...] --questions Q.jsonl --images DIR
                             --out OUT_PREFIX [--limit N] [--max-new-tokens 48]

writes OUT_PREFIX.NAME.json (answers: question_id, tokens, text) and OUT_PREFIX.NAME.safetensors
(first-step logits per question) for every --model.

This is what a user of a release does: no `llava_structlora` import anywhere (checked at the
end). The prompt is LLaVA-1.5's vicuna_v1 format as the model card documents, the image is padded
to a square with the processor's mean colour (LLaVA's expand2square) and decoding is greedy.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from PIL import Image


def expand2square(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    out = Image.new(img.mode, (side, side), background)
    out.paste(img, ((side - w) // 2, (side - h) // 2))
    return out


def load(spec: str):
    """NAME=DIR[+ADAPTER]: a stock model, optionally with a PEFT adapter merged as the model card shows."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    name, _, paths = spec.partition("=")
    model_dir, _, adapter = paths.partition("+")
    model = LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return name, model.eval(), AutoProcessor.from_pretrained(model_dir)


def answer(model, processor, rows: list[dict], images: str, max_new_tokens: int) -> tuple[list[dict], dict]:
    mean = tuple(int(x * 255) for x in processor.image_processor.image_mean)
    answers, first_logits = [], {}
    for row in rows:
        img = expand2square(Image.open(f"{images}/{row['image']}").convert("RGB"), mean)
        text = row["text"] if "<image>" in row["text"] else f"<image>\n{row['text']}"
        inputs = processor(images=img, text=f"USER: {text} ASSISTANT:", return_tensors="pt")
        with torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                output_logits=True,
                return_dict_in_generate=True,
            )
        new = out.sequences[0, inputs["input_ids"].shape[1] :]
        answers.append(
            {
                "question_id": row["question_id"],
                "tokens": new.tolist(),
                "text": processor.tokenizer.decode(new, skip_special_tokens=True).strip(),
            }
        )
        first_logits[str(row["question_id"])] = out.logits[0][0].contiguous()
    return answers, first_logits


def main() -> int:
    from safetensors.torch import save_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", required=True, help="NAME=MODEL_DIR[+ADAPTER_DIR]")
    ap.add_argument("--questions", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [json.loads(line) for line in open(args.questions) if line.strip()][: args.limit]
    for spec in args.model:
        name, model, processor = load(spec)
        answers, logits = answer(model, processor, rows, args.images, args.max_new_tokens)
        json.dump(answers, open(f"{args.out}.{name}.json", "w"))
        save_file(logits, f"{args.out}.{name}.safetensors")
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("llava_structlora", "data_prep", "experiments"))
    if leaked:
        print(f"project modules were imported: {leaked}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
