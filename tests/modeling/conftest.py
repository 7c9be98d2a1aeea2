"""Tiny LLaVA-1.5 (`llava`) and LLaVA-NeXT (`llava_next`) bases saved as safetensors (no downloads)."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_configs import tiny_vision_text


@pytest.fixture(scope="session")
def llava_base(tmp_path_factory):
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    vc, tc = tiny_vision_text()
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("llava_base")
    cfg = LlavaConfig(vision_config=vc, text_config=tc, image_token_index=99)
    LlavaForConditionalGeneration(cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def llava_next_base(tmp_path_factory):
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration

    vc, tc = tiny_vision_text()
    torch.manual_seed(0)
    cfg = LlavaNextConfig(
        vision_config=vc, text_config=tc, image_token_index=99, image_grid_pinpoints=[[32, 32], [32, 64]]
    )
    out = tmp_path_factory.mktemp("llava_next_base")
    LlavaNextForConditionalGeneration(cfg).save_pretrained(out)
    return out
