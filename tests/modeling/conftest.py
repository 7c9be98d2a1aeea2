"""Tiny LLaVA-1.5 (`llava`) and LLaVA-NeXT (`llava_next`) bases saved as safetensors (no downloads)."""

from __future__ import annotations

import pytest
import torch


def _text_vision():
    from transformers import CLIPVisionConfig, LlamaConfig

    vc = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=32,
    )
    tc = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=100,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    return vc, tc


@pytest.fixture(scope="session")
def llava_base(tmp_path_factory):
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    vc, tc = _text_vision()
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("llava_base")
    cfg = LlavaConfig(vision_config=vc, text_config=tc, image_token_index=99)
    LlavaForConditionalGeneration(cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def llava_next_base(tmp_path_factory):
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration

    vc, tc = _text_vision()
    torch.manual_seed(0)
    cfg = LlavaNextConfig(
        vision_config=vc, text_config=tc, image_token_index=99, image_grid_pinpoints=[[32, 32], [32, 64]]
    )
    out = tmp_path_factory.mktemp("llava_next_base")
    LlavaNextForConditionalGeneration(cfg).save_pretrained(out)
    return out
