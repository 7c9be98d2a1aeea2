"""Batch collation: right padding for training (labels padded with IGNORE_INDEX), left padding
for generation so that every prompt ends at the last position and greedy decoding of a whole
batch appends to aligned ends."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .conversation import IGNORE_INDEX


def _pad(seqs: Sequence[torch.Tensor], value: int, left: bool) -> torch.Tensor:
    if left:
        flipped = [s.flip(0) for s in seqs]
        return torch.nn.utils.rnn.pad_sequence(flipped, batch_first=True, padding_value=value).flip(1)
    return torch.nn.utils.rnn.pad_sequence(list(seqs), batch_first=True, padding_value=value)


def _stack_images(batch: Sequence[dict[str, Any]]) -> torch.Tensor | None:
    """Images of the samples that have one, in order (Llava fills image tokens in that order).

    LLaVA-NeXT items are ``(patches, 3, H, W)`` with per-image patch counts: zero patches pad them
    to the batch maximum, as LlavaNextImageProcessor does; the model keeps only each image's own
    patches (it recomputes their number from ``image_sizes``).
    """
    imgs = [b["pixel_values"] for b in batch if b.get("pixel_values") is not None]
    if not imgs:
        return None
    if imgs[0].dim() == 4:
        n = max(x.shape[0] for x in imgs)
        imgs = [torch.nn.functional.pad(x, (0, 0, 0, 0, 0, 0, 0, n - x.shape[0])) for x in imgs]
    return torch.stack(imgs)


def _add_images(out: dict[str, Any], batch: Sequence[dict[str, Any]]) -> None:
    """``pixel_values`` (+ ``image_sizes`` for NeXT items) into ``out``; nothing for text-only batches."""
    pixel_values = _stack_images(batch)
    if pixel_values is None:
        return
    out["pixel_values"] = pixel_values
    sizes = [b.get("image_sizes") for b in batch if b.get("pixel_values") is not None]
    if any(s is not None for s in sizes):
        if any(s is None for s in sizes):
            raise ValueError("a batch mixes items with and without image_sizes (LLaVA-NeXT items need both)")
        out["image_sizes"] = torch.stack([torch.as_tensor(s, dtype=torch.long) for s in sizes])


@dataclass
class DataCollatorForSupervisedDataset:
    """Right-pads ``input_ids`` (pad id) and ``labels`` (-100); builds ``attention_mask``."""

    pad_token_id: int

    def __call__(self, batch: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = [torch.as_tensor(b["input_ids"]) for b in batch]
        out = {
            "input_ids": _pad(ids, self.pad_token_id, left=False),
            "labels": _pad([torch.as_tensor(b["labels"]) for b in batch], IGNORE_INDEX, left=False),
            "attention_mask": _pad([torch.ones_like(t) for t in ids], 0, left=False),
        }
        _add_images(out, batch)
        return out


def collate_for_generation(batch: Sequence[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """Left-pads prompts. Items: ``{"input_ids", "pixel_values" (or None), "id"}`` (+ ``image_sizes``).

    Returns ``input_ids``, ``attention_mask``, ``pixel_values`` / ``image_sizes`` (absent if no
    image) and ``ids``.
    """
    ids = [torch.as_tensor(b["input_ids"]) for b in batch]
    out: dict[str, Any] = {
        "input_ids": _pad(ids, pad_token_id, left=True),
        "attention_mask": _pad([torch.ones_like(t) for t in ids], 0, left=True),
        "ids": [b.get("id") for b in batch],
    }
    _add_images(out, batch)
    return out
