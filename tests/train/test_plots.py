"""The what-moved figure draws the coordinator's smoothing coefficients when there are any."""

from __future__ import annotations

import json

import torch

from llava_structlora.structlora import StructLoRAConfig, apply_structlora, structlora_moved
from llava_structlora.train.plots import plot_moved


def tiny_llava():
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    from tests.tiny_configs import tiny_vision_text

    vc, tc = tiny_vision_text()
    torch.manual_seed(0)
    return LlavaForConditionalGeneration(LlavaConfig(vision_config=vc, text_config=tc, image_token_index=99))


def test_moved_plot_with_and_without_smoothing(tmp_path):
    for coordinator in ("gnn", "none"):
        moved = json.loads(
            json.dumps(structlora_moved(apply_structlora(tiny_llava(), StructLoRAConfig(coordinator=coordinator))))
        )
        assert (moved["smoothing"] is None) == (coordinator == "none")
        png = plot_moved(moved, tmp_path / f"{coordinator}.png")
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
