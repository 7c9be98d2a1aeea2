"""Stock-only probe run under either transformers version (no project imports).

    python portable_probe.py OUT_PREFIX IMAGE NAME=MODEL_DIR[+ADAPTER_DIR] ...

For every model: load with ``output_loading_info``, attach the adapter with stock PEFT, encode IMAGE (a
real photograph, non-square and larger than the base's input: the processor's resize path runs) + a prompt
with the folder's own processor (the adapter folder's when it has one), run a forward pass and
``model.generate(**processor(...))`` as a user does, and write the logits, input ids, pixel values and
generated ids to OUT_PREFIX.safetensors (keys ``NAME.logits`` ...) and the loading report (missing /
unexpected keys, tokenizer and image processor classes, the processor's output keys, LoRA tensors attached
with their norms, the decoded answer) to OUT_PREFIX.json.
"""

from __future__ import annotations

import json
import os
import re
import sys

import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoProcessor, LlavaForConditionalGeneration

PROMPT = "USER: <image>\nWhat shape is in the image? ASSISTANT:"


def probe(model_dir: str, adapter: str | None, image: str) -> tuple[dict, dict]:
    model, info = LlavaForConditionalGeneration.from_pretrained(model_dir, output_loading_info=True)
    report = {k: sorted(map(str, v)) for k, v in info.items() if k != "error_msgs"}
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
        # names in one spelling, so that v4 and v5 reports compare
        report["lora"] = {
            re.sub(r"vision_model\.|\.default", "", n): float(p.detach().norm())
            for n, p in model.named_parameters()
            if ".lora_" in n
        }
    model.eval()
    # a release folder carries the processor files too: read them from there when present
    has_own = adapter is not None and os.path.isfile(os.path.join(adapter, "tokenizer_config.json"))
    processor = AutoProcessor.from_pretrained(adapter if has_own else model_dir)
    report["tokenizer"] = type(processor.tokenizer).__name__
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What shape is it?"}]}]
    report["chat"] = (
        processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        if getattr(processor, "chat_template", None)
        else None
    )
    report["image_processor"] = type(processor.image_processor).__name__
    enc = processor(images=Image.open(image).convert("RGB"), text=PROMPT, return_tensors="pt")
    report["inputs"] = sorted(enc.keys())
    with torch.no_grad():
        logits = model(**enc).logits
        gen = model.generate(**enc, max_new_tokens=8, do_sample=False)  # what the model card tells users to run
    new = gen[0, enc["input_ids"].shape[1] :]
    report["answer"] = processor.tokenizer.decode(new, skip_special_tokens=True)
    return report, {"logits": logits.float(), "ids": enc["input_ids"], "pix": enc["pixel_values"].float(), "gen": new}


def main(argv: list[str]) -> None:
    out, image, specs = argv[0], argv[1], argv[2:]
    torch.manual_seed(0)
    reports, tensors = {"transformers": transformers.__version__}, {}
    for spec in specs:
        name, _, path = spec.partition("=")
        model_dir, _, adapter = path.partition("+")
        rep, ten = probe(model_dir, adapter or None, image)
        reports[name] = rep
        tensors.update({f"{name}.{k}": v.contiguous() for k, v in ten.items()})
    save_file(tensors, f"{out}.safetensors")
    with open(f"{out}.json", "w") as f:
        json.dump(reports, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
