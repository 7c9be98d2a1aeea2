"""A tiny LLaVA world (pretrain JSON + 64 px shape images) for the toy-base tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

COLOURS = {"red": (235, 30, 30), "blue": (40, 90, 255), "green": (30, 200, 50)}


def write_pretrain(root: Path, n: int = 40) -> Path:
    """DATA_ROOT with pretrain/llava_train.json + manifest.json (image_folder) + images."""
    task = root / "pretrain"
    (root / "images").mkdir(parents=True, exist_ok=True)
    task.mkdir(parents=True, exist_ok=True)
    recs = []
    for i in range(n):
        colour, shape = list(COLOURS)[i % 3], ("circle", "square")[(i // 3) % 2]
        img = Image.new("RGB", (64, 64), (0, 0, 0))
        (ImageDraw.Draw(img).ellipse if shape == "circle" else ImageDraw.Draw(img).rectangle)(
            [16, 16, 48, 48], fill=COLOURS[colour]
        )
        img.save(root / "images" / f"{i}.jpg")
        q, a = (f"what color is the {shape}?", colour) if i % 2 else ("describe the image.", f"a {colour} {shape}")
        recs.append(
            {
                "id": str(i),
                "image": f"{i}.jpg",
                "conversations": [{"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": a}],
            }
        )
    (task / "llava_train.json").write_text(json.dumps(recs))
    (task / "manifest.json").write_text(json.dumps({"image_folder": "../images", "counts": {"train": n}}))
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return write_pretrain(tmp_path_factory.mktemp("toyworld"))
