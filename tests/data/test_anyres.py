"""LLaVA-NeXT (anyres) encoding: image-token counts, ids, pixel tiles and image_sizes agree with the
stock LlavaNextProcessor for images of any aspect ratio, and a tiny NeXT model accepts the batches."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from llava_structlora.data import (
    DataCollatorForSupervisedDataset,
    LazySupervisedDataset,
    collate_for_generation,
    conversation_segments,
    encode_conversation,
    encode_prompt,
    is_anyres,
    load_image_and_size,
    num_image_tokens,
)

SIZES = [(64, 64), (40, 100), (100, 30), (150, 200), (17, 33), (48, 144)]  # (height, width)
TURNS = [{"from": "human", "value": "<image>\nwhat color is the circle?"}, {"from": "gpt", "value": "red"}]


@pytest.fixture(scope="module")
def next_proc(processor):
    from llava_structlora.toy.build_next import next_processor, scaled_pinpoints

    return next_processor(processor, scaled_pinpoints(processor.image_processor.crop_size["height"]))


@pytest.fixture(scope="module")
def tiny_next(next_proc):
    from transformers import LlavaNextForConditionalGeneration

    from llava_structlora.toy.build_next import next_config
    from llava_structlora.toy.model_config import get_preset, llava_config

    tok = next_proc.tokenizer
    base = llava_config(
        get_preset("smoke").model,
        len(tok),
        next_proc.image_token_id,
        tok.pad_token_id,
        tok.bos_token_id,
        tok.eos_token_id,
    )
    torch.manual_seed(0)
    cfg = next_config(base, next_proc.image_processor.image_grid_pinpoints, 256)
    return LlavaNextForConditionalGeneration(cfg).eval()


def _img(hw, colour=(200, 30, 30)) -> Image.Image:
    return Image.new("RGB", (hw[1], hw[0]), colour)


def test_1_5_processor_is_not_anyres(processor, next_proc):
    assert not is_anyres(processor) and is_anyres(next_proc)
    with pytest.raises(ValueError, match="image_size"):
        num_image_tokens(next_proc)


@pytest.mark.parametrize("hw", SIZES)
def test_token_count_and_ids_equal_stock_processor(next_proc, hw):
    text = "".join(s.text for s in conversation_segments(TURNS))
    ref = next_proc(text=text, images=_img(hw), return_tensors="pt")
    n_ref = int((ref["input_ids"][0] == next_proc.image_token_id).sum())
    assert num_image_tokens(next_proc, hw) == n_ref
    ids, labels = encode_conversation(TURNS, next_proc, image_size=hw)
    assert ids == ref["input_ids"][0].tolist()
    assert ref["image_sizes"][0].tolist() == list(hw)


def test_counts_vary_with_aspect_ratio(next_proc):
    counts = {hw: num_image_tokens(next_proc, hw) for hw in SIZES}
    assert len(set(counts.values())) >= 3, counts  # anyres: not one fixed count
    assert counts[(64, 64)] == 9 + 36 + 6  # base view 3x3, 2x2 crops -> 6x6 + one newline per row


@pytest.mark.parametrize("hw", [(64, 64), (100, 30)])
def test_pixel_tiles_equal_stock_processor(next_proc, tmp_path, hw):
    path = tmp_path / "x.png"
    _img(hw).save(path)
    px, size = load_image_and_size(str(path), next_proc)
    ref = next_proc.image_processor(_img(hw), return_tensors="pt")
    assert size == hw and px.dim() == 4 and px.shape[1:] == (3, 48, 48)
    assert torch.equal(px, ref["pixel_values"][0][: px.shape[0]])
    assert ref["pixel_values"][0][px.shape[0] :].abs().sum() == 0  # only zero padding was cut


def _mixed_world(root):
    (root / "images").mkdir(parents=True)
    recs = []
    for i, hw in enumerate(SIZES[:4]):
        _img(hw, ((235, 30, 30), (40, 90, 255), (30, 200, 50))[i % 3]).save(root / "images" / f"{i}.png")
        recs.append({"id": f"m{i}", "image": f"images/{i}.png", "conversations": TURNS})
    text_only = [{"from": "human", "value": "say red"}, {"from": "gpt", "value": "red"}]
    recs.append({"id": "text", "conversations": text_only})
    (root / "llava_train.json").write_text(json.dumps(recs))
    return root / "llava_train.json"


def test_dataset_collator_and_forward(next_proc, tiny_next, tmp_path):
    ds = LazySupervisedDataset(_mixed_world(tmp_path), next_proc, image_folder=tmp_path, model_max_length=256)
    items = [ds[i] for i in range(len(ds))]
    assert ds.truncated == 0
    for it, hw in zip(items[:4], SIZES[:4]):
        assert it["image_sizes"].tolist() == list(hw)
        assert int((it["input_ids"] == next_proc.image_token_id).sum()) == num_image_tokens(next_proc, hw)
    assert items[-1]["pixel_values"] is None and items[-1]["image_sizes"] is None
    assert int((items[-1]["input_ids"] == next_proc.image_token_id).sum()) == 0
    batch = DataCollatorForSupervisedDataset(next_proc.tokenizer.pad_token_id)(items)
    n_patches = max(it["pixel_values"].shape[0] for it in items[:-1])
    assert batch["pixel_values"].shape == (4, n_patches, 3, 48, 48)
    assert batch["image_sizes"].tolist() == [list(hw) for hw in SIZES[:4]]
    with torch.no_grad():
        out = tiny_next(**batch)
        single = [
            tiny_next(**DataCollatorForSupervisedDataset(next_proc.tokenizer.pad_token_id)([it])).loss
            for it in items[:2]
        ]
    assert torch.isfinite(out.loss) and all(torch.isfinite(s) for s in single)
    # patch padding changes nothing: the first sample's logits alone equal its logits in the batch
    with torch.no_grad():
        alone = tiny_next(**DataCollatorForSupervisedDataset(next_proc.tokenizer.pad_token_id)([items[0]])).logits
    n = alone.shape[1]
    assert torch.allclose(out.logits[0, :n], alone[0], atol=1e-5)


def test_generation_batch_with_image_sizes(next_proc, tiny_next):
    hws = [(64, 64), (100, 30)]
    pixels = [next_proc.image_processor(_img(hw), return_tensors="pt")["pixel_values"][0] for hw in hws]
    items = [
        {
            "input_ids": torch.tensor(encode_prompt("what color?", next_proc, image_size=hw)),
            "id": i,
            "pixel_values": px,
            "image_sizes": torch.tensor(hw),
        }
        for i, (hw, px) in enumerate(zip(hws, pixels))
    ]
    batch = collate_for_generation(items, next_proc.tokenizer.pad_token_id)
    assert batch["image_sizes"].tolist() == [list(hw) for hw in hws]
    out = tiny_next.generate(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        pixel_values=batch["pixel_values"],
        image_sizes=batch["image_sizes"],
        max_new_tokens=3,
        do_sample=False,
        pad_token_id=next_proc.tokenizer.pad_token_id,
    )
    assert out.shape == (2, batch["input_ids"].shape[1] + 3)
