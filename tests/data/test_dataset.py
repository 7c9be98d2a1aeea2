from __future__ import annotations

import json
import logging

import pytest
import torch
from PIL import Image

from llava_structlora.data import (
    IGNORE_INDEX,
    BadRecordError,
    LazySupervisedDataset,
    build_prompt,
    conversation_segments,
    encode_conversation,
    encode_prompt,
    expand2square,
    mean_colour,
    num_image_tokens,
)

TWO_TURNS = [
    {"from": "human", "value": "what color is the circle?\n<image>"},
    {"from": "gpt", "value": "red"},
    {"from": "human", "value": "what shape is it?"},
    {"from": "gpt", "value": "a circle"},
]


def test_segments_follow_vicuna_v1():
    segs = conversation_segments(TWO_TURNS)
    assert "".join(s.text for s in segs) == (
        "USER: <image>\nwhat color is the circle? ASSISTANT: red</s>USER: what shape is it? ASSISTANT: a circle</s>"
    )
    assert [s.is_target for s in segs] == [False, True, False, True]
    assert build_prompt("what shape is it?") == "USER: <image>\nwhat shape is it? ASSISTANT:"


def test_two_turn_ids_and_label_mask_exact(processor, world):
    tok = processor.tokenizer
    ids, labels = encode_conversation(TWO_TURNS, processor)
    n_img = num_image_tokens(processor)
    assert n_img == 9  # 48 px / 16 px patches, CLS dropped
    # the stock LlavaProcessor on the whole string gives exactly the same ids
    text = "".join(s.text for s in conversation_segments(TWO_TURNS))
    ref = processor(text=text, images=Image.open(world.parent / "images/0.png"), return_tensors="pt")
    assert ids == ref["input_ids"][0].tolist()
    assert ids.count(processor.image_token_id) == n_img
    # labels: exactly the two answers with their </s>, everything else ignored
    expect = [IGNORE_INDEX] * len(ids)
    prompt1 = encode_prompt(TWO_TURNS[0]["value"], processor)
    a1 = tok(" red</s>", add_special_tokens=False)["input_ids"]
    q2 = tok("USER: what shape is it? ASSISTANT:", add_special_tokens=False)["input_ids"]
    a2 = tok(" a circle</s>", add_special_tokens=False)["input_ids"]
    assert ids == prompt1 + a1 + q2 + a2
    s1, s2 = len(prompt1), len(prompt1) + len(a1) + len(q2)
    expect[s1 : s1 + len(a1)] = a1
    expect[s2 : s2 + len(a2)] = a2
    assert labels == expect
    assert tok.decode([t for t in labels if t != IGNORE_INDEX]) == " red</s> a circle</s>"


def test_dataset_item_and_forward(processor, world):
    from transformers import LlavaForConditionalGeneration

    from llava_structlora.data import DataCollatorForSupervisedDataset
    from llava_structlora.toy.model_config import get_preset, llava_config

    ds = LazySupervisedDataset(world, processor)
    item = ds[0]
    assert item["id"] == "r0" and item["pixel_values"].shape == (3, 48, 48)
    batch = DataCollatorForSupervisedDataset(processor.tokenizer.pad_token_id)([ds[0], ds[1]])
    tok = processor.tokenizer
    cfg = llava_config(
        get_preset("smoke").model,
        len(tok),
        processor.image_token_id,
        tok.pad_token_id,
        tok.bos_token_id,
        tok.eos_token_id,
    )
    loss = LlavaForConditionalGeneration(cfg)(**batch).loss
    assert torch.isfinite(loss)


def test_record_without_gpt_turn_is_counted_and_logged(processor, world, tmp_path, caplog):
    good = json.loads(world.read_text())[:2]
    bad = {"id": "nogpt", "image": "images/0.png", "conversations": [{"from": "human", "value": "<image>\nhi"}]}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([good[0], bad, good[1]]))
    with caplog.at_level(logging.WARNING):
        ds = LazySupervisedDataset(path, processor, image_folder=world.parent)
    assert len(ds) == 2 and ds.skipped == {"no gpt turn": 1}
    assert "nogpt" in caplog.text and "no gpt turn" in caplog.text
    with pytest.raises(BadRecordError, match="nogpt"):
        LazySupervisedDataset(path, processor, image_folder=world.parent, strict=True)


def test_corrupt_image_is_counted_and_skipped(processor, world, tmp_path, caplog):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    recs = json.loads(world.read_text())[:2]
    recs[0] = {**recs[0], "id": "corrupt", "image": str(tmp_path / "broken.jpg")}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(recs))
    ds = LazySupervisedDataset(path, processor, image_folder=world.parent)
    with caplog.at_level(logging.WARNING):
        item = ds[0]
    assert item["id"] == recs[1]["id"] and ds.skipped == {"bad image": 1}
    assert "corrupt" in caplog.text and "broken.jpg" in caplog.text
    strict = LazySupervisedDataset(path, processor, image_folder=world.parent, strict=True)
    with pytest.raises(BadRecordError, match="corrupt"):
        strict[0]


def test_truncation_counted_and_never_cuts_image(processor, world, caplog):
    full = len(LazySupervisedDataset(world, processor)[0]["input_ids"])
    ds = LazySupervisedDataset(world, processor, model_max_length=full - 3)
    with caplog.at_level(logging.WARNING):
        item = ds[0]
    assert len(item["input_ids"]) == full - 3 and ds.truncated == 1 and "truncated" in caplog.text
    assert (item["input_ids"] == processor.image_token_id).sum() == num_image_tokens(processor)
    with pytest.raises(ValueError, match="image tokens"):
        LazySupervisedDataset(world, processor, model_max_length=5)[0]


def test_expand2square_pads_with_processor_mean(processor):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    sq = expand2square(img, mean_colour(processor))
    assert sq.size == (40, 40)
    assert sq.getpixel((0, 0)) == mean_colour(processor) and sq.getpixel((20, 20)) == (255, 0, 0)
