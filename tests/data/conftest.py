"""Tiny LLaVA world for the data tests: a few 64 px shape images, a LLaVA JSON and the smoke
processor (tokenizer trained on the JSON's text)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

COLOURS = {"red": (235, 30, 30), "blue": (40, 90, 255), "green": (30, 200, 50)}
SHAPES = ("circle", "square")


def write_image(path: Path, colour: str, shape: str, size=(64, 64)) -> None:
    img = Image.new("RGB", size, (0, 0, 0))
    d = ImageDraw.Draw(img)
    box = [16, 16, 48, 48]
    (d.ellipse if shape == "circle" else d.rectangle)(box, fill=COLOURS[colour])
    img.save(path)


def write_world(root: Path, n: int = 12) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n):
        c, s = list(COLOURS)[i % 3], SHAPES[i % 2]
        write_image(root / "images" / f"{i}.png", c, s)
        recs.append(
            {
                "id": f"r{i}",
                "image": f"images/{i}.png",
                "conversations": [
                    {"from": "human", "value": f"<image>\nwhat color is the {s}?"},
                    {"from": "gpt", "value": c},
                    {"from": "human", "value": "what shape is it?"},
                    {"from": "gpt", "value": f"a {s}"},
                ],
            }
        )
    path = root / "llava_train.json"
    path.write_text(json.dumps(recs))
    (root / "manifest.json").write_text(
        json.dumps({"counts": {"records": n}, "skipped": 0, "reasons": {}, "image_folder": "."})
    )
    return path


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return write_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="session")
def processor(world):
    from llava_structlora.toy.build_base import build_processor
    from llava_structlora.toy.model_config import get_preset
    from llava_structlora.toy.tokenizer import build_tokenizer

    preset = get_preset("smoke")
    return build_processor(build_tokenizer([world], 128, 64), preset)
