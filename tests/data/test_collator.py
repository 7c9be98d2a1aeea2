from __future__ import annotations

import torch

from llava_structlora.data import IGNORE_INDEX, DataCollatorForSupervisedDataset, collate_for_generation


def _items():
    px = torch.zeros(3, 4, 4)
    return [
        {"input_ids": torch.tensor([5, 6, 7]), "labels": torch.tensor([-100, 6, 7]), "pixel_values": px, "id": "a"},
        {"input_ids": torch.tensor([8]), "labels": torch.tensor([8]), "pixel_values": px + 1, "id": "b"},
    ]


def test_training_collator_pads_right():
    out = DataCollatorForSupervisedDataset(pad_token_id=0)(_items())
    assert out["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert out["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["pixel_values"].shape == (2, 3, 4, 4) and out["pixel_values"][1].eq(1).all()


def test_generation_collator_pads_left():
    out = collate_for_generation(_items(), pad_token_id=0)
    assert out["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]]
    assert out["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert out["ids"] == ["a", "b"] and out["pixel_values"].shape == (2, 3, 4, 4)


def test_text_only_samples_have_no_pixel_values():
    items = [{**it, "pixel_values": None} for it in _items()]
    assert "pixel_values" not in DataCollatorForSupervisedDataset(0)(items)
    assert "pixel_values" not in collate_for_generation(items, 0)
