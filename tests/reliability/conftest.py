"""Fixtures of the reliability suite: a bad-input corpus on disk and the smoke processor.

Every corpus entry is a small file written the way real corruption looks (a JPEG cut short, a
PNG with its tail missing, a CMYK JPEG from a print pipeline, an empty file left by a crashed
download, JSON with invalid UTF-8 bytes...), so the tests exercise the real decoders and parsers.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw


def _shape_image(mode: str = "RGB", size: tuple[int, int] = (64, 48)) -> Image.Image:
    img = Image.new("RGB", size, (0, 0, 0))
    ImageDraw.Draw(img).ellipse([8, 8, 40, 40], fill=(230, 40, 40))
    return img.convert(mode)


def _encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def write_images(folder: Path) -> dict[str, Path]:
    """Good, convertible and broken images; returns kind -> path (``missing`` is never written)."""
    folder.mkdir(parents=True, exist_ok=True)
    good_jpeg = _encoded(_shape_image(), "JPEG")
    good_png = _encoded(_shape_image(), "PNG")
    files = {
        "good": ("good.png", good_png),
        "grayscale": ("gray.png", _encoded(_shape_image("L"), "PNG")),
        "rgba": ("rgba.png", _encoded(_shape_image("RGBA"), "PNG")),
        "cmyk": ("cmyk.jpg", _encoded(_shape_image("CMYK"), "JPEG")),
        "palette": ("palette.png", _encoded(_shape_image("P"), "PNG")),
        # SOI + APP0 kept, entropy-coded data replaced by garbage: the header parses, decoding fails
        "corrupt_jpeg": ("corrupt.jpg", good_jpeg[:20] + bytes(range(256)) * 4),
        "truncated_png": ("truncated.png", good_png[: len(good_png) // 2]),
        "empty_file": ("empty.jpg", b""),
        "not_an_image": ("text.jpg", b"this is not an image\n"),
    }
    out = {}
    for kind, (name, data) in files.items():
        (folder / name).write_bytes(data)
        out[kind] = folder / name
    out["missing"] = folder / "does_not_exist.jpg"
    return out


def record(rid: str, image: str | None, question: str = "<image>\nwhat shape is it?", answer: str = "a circle") -> dict:
    rec = {"id": rid, "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}
    if image is not None:
        rec["image"] = image
    return rec


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Path]:
    torch.set_num_threads(1)
    return write_images(tmp_path_factory.mktemp("corpus") / "images")


@pytest.fixture(scope="session")
def processor(tmp_path_factory):
    """The smoke base's processor with a tokenizer trained on a few shapes sentences."""
    from llava_structlora.toy.build_base import build_processor
    from llava_structlora.toy.model_config import get_preset
    from llava_structlora.toy.tokenizer import build_tokenizer

    texts = [
        record(f"t{i}", None, f"what colour is the {s}?", f"a {c} {s}")
        for i, (s, c) in enumerate([("circle", "red"), ("square", "blue"), ("triangle", "green")] * 4)
    ]
    path = write_json(tmp_path_factory.mktemp("tok") / "text.json", texts)
    return build_processor(build_tokenizer([path], 128, 64), get_preset("smoke"))


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, processor) -> Path:
    """A smoke-width stock Llava + processor saved with ``save_pretrained`` (random weights)."""
    from transformers import LlavaForConditionalGeneration

    from llava_structlora.toy.model_config import get_preset, llava_config

    tok = processor.tokenizer
    cfg = llava_config(
        get_preset("smoke").model,
        len(tok),
        tok.convert_tokens_to_ids(processor.image_token),
        tok.pad_token_id,
        tok.bos_token_id,
        tok.eos_token_id,
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("base")
    LlavaForConditionalGeneration(cfg).save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def peft_adapter(tmp_path_factory, tiny_base) -> Path:
    """A stock PEFT LoRA adapter (q/v) of ``tiny_base`` with non-zero B."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(tiny_base)
    peft = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=r".*layers\.\d+\.self_attn\.(q_proj|v_proj)")
    )
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    out = tmp_path_factory.mktemp("adapter")
    peft.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def eval_world(tmp_path_factory, corpus) -> Path:
    """A GQA testdev split of 3 questions with answers (so results.json and scores are written)."""
    root = tmp_path_factory.mktemp("evaldata")
    gqa = root / "gqa"
    gqa.mkdir()
    for i in range(3):
        shutil.copy(corpus["good"], gqa / f"im{i}.png")
    (gqa / "manifest.json").write_text(json.dumps({"task": "gqa", "image_folder": "."}))
    lines = [json.dumps({"question_id": f"q{i}", "image": f"im{i}.png", "text": "what colour?"}) for i in range(3)]
    (gqa / "testdev_questions.jsonl").write_text("\n".join(lines) + "\n")
    refs = {
        f"q{i}": {"imageId": f"im{i}", "question": "what colour?", "answer": "red", "isBalanced": True}
        for i in range(3)
    }
    (gqa / "testdev_questions.json").write_text(json.dumps(refs))
    return root
