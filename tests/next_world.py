"""A tiny LLaVA-NeXT world for tests: images of several aspect ratios, a LLaVA JSON, and a randomly
initialised LlavaNextForConditionalGeneration + LlavaNextProcessor saved from config (CPU seconds)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from PIL import Image, ImageDraw

SIZES = [(64, 64), (40, 100), (100, 30), (72, 120)]  # (height, width): anyres tiles them differently
COLOURS = {"red": (235, 30, 30), "blue": (40, 90, 255), "green": (30, 200, 50)}


def write_world(root: Path, n: int = 16) -> Path:
    """``n`` one-circle images cycling through SIZES, one question each; returns the JSON path."""
    (root / "images").mkdir(parents=True)
    recs = []
    for i in range(n):
        h, w = SIZES[i % len(SIZES)]
        colour = list(COLOURS)[i % 3]
        img = Image.new("RGB", (w, h), (0, 0, 0))
        ImageDraw.Draw(img).ellipse([w // 4, h // 4, 3 * w // 4, 3 * h // 4], fill=COLOURS[colour])
        img.save(root / "images" / f"{i}.png")
        recs.append(
            {
                "id": f"n{i}",
                "image": f"images/{i}.png",
                "conversations": [
                    {"from": "human", "value": "<image>\nwhat color is the circle?"},
                    {"from": "gpt", "value": colour},
                ],
            }
        )
    (root / "llava_train.json").write_text(json.dumps(recs))
    (root / "manifest.json").write_text(json.dumps({"counts": {}, "skipped": 0, "reasons": {}, "image_folder": "."}))
    return root / "llava_train.json"


def save_tiny_next(root: Path) -> dict[str, Path]:
    """root/world (data) + root/base (model + processor); returns {"base", "data"}."""
    from transformers import LlavaNextForConditionalGeneration

    from llava_structlora.toy.build_base import build_processor
    from llava_structlora.toy.build_next import next_config, next_processor, scaled_pinpoints
    from llava_structlora.toy.model_config import get_preset, llava_config
    from llava_structlora.toy.tokenizer import build_tokenizer

    data = write_world(root / "world")
    preset = get_preset("smoke")
    tok = build_tokenizer([data], 128, 256)
    proc = next_processor(build_processor(tok, preset), scaled_pinpoints(preset.model.image_size))
    arch = dataclasses.replace(preset.model, vision_layers=2, text_layers=2)  # layer -2 of 2 feeds the projector
    cfg = next_config(
        llava_config(arch, len(tok), proc.image_token_id, tok.pad_token_id, tok.bos_token_id, tok.eos_token_id),
        proc.image_processor.image_grid_pinpoints,
        256,
    )
    for c in (cfg.text_config, cfg.vision_config):
        c.initializer_range = 0.1  # non-trivial logits and answers, so equality checks compare real numbers
    torch.manual_seed(0)
    LlavaNextForConditionalGeneration(cfg).save_pretrained(root / "base")
    proc.save_pretrained(root / "base")
    return {"base": root / "base", "data": data}
