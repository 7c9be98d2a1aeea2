from __future__ import annotations

import json

import pytest
import torch

from llava_structlora.toy.build_base import STAMP, build_base


def test_smoke_base_builds_loads_with_stock_classes_and_is_cached(data_root, tmp_path):
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    out = build_base(data_root, tmp_path / "base", preset="smoke")
    stamp = json.loads((out / STAMP).read_text())
    assert stamp["pretrain_loss"][1] < stamp["pretrain_loss"][0]  # it trained
    model = LlavaForConditionalGeneration.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    prompt = "USER: <image>\nwhat color is the circle? ASSISTANT:"
    inputs = processor(text=[prompt], images=[Image.open(data_root / "images" / "0.jpg")], return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert gen.shape[1] > inputs["input_ids"].shape[1]
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what color is the circle?"}]}]
    assert processor.apply_chat_template(msgs, add_generation_prompt=True) == prompt  # trained format by default
    # cached: same inputs -> untouched; changed data -> rebuilt
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    import shutil

    (out / "chat_template.jinja").unlink()  # a base built before the templates existed
    shutil.rmtree(out / "additional_chat_templates")
    build_base(data_root, out, preset="smoke")
    assert (out / "model.safetensors").stat().st_mtime_ns == mtime
    assert AutoProcessor.from_pretrained(out).apply_chat_template(msgs, add_generation_prompt=True) == prompt
    assert (out / "additional_chat_templates" / "vicuna_v1.jinja").is_file()
    pre = data_root / "pretrain" / "llava_train.json"
    recs = json.loads(pre.read_text())
    pre.write_text(json.dumps(recs[:-1]))
    try:
        build_base(data_root, out, preset="smoke")
    finally:
        pre.write_text(json.dumps(recs))
    assert json.loads((out / STAMP).read_text())["key"] != stamp["key"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_missing_pretrain_json_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrain/llava_train.json"):
        # the base is written beside the data root, never inside it (the builders refuse that)
        (tmp_path / "data").mkdir()
        build_base(tmp_path / "data", tmp_path / "base", preset="smoke")
