"""Tiny Llava built from config (no downloads) and an in-memory dataset for the Trainer tests."""
from __future__ import annotations

import pytest
import torch

IMAGE_TOKEN = 99
N_IMG = 16  # 32 px / patch 8 = 16 patches (CLS dropped by the "default" strategy)


def tiny_llava_config():
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vc = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                          image_size=32, patch_size=8, projection_dim=32)
    tc = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=2, vocab_size=100, max_position_embeddings=128, pad_token_id=0)
    return LlavaConfig(vision_config=vc, text_config=tc, image_token_index=IMAGE_TOKEN,
                       vision_feature_layer=-1, vision_feature_select_strategy="default")


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_base")
    LlavaForConditionalGeneration(tiny_llava_config()).save_pretrained(out)
    return out


class FakeLlavaData(torch.utils.data.Dataset):
    """Deterministic image + 8 answer tokens per item (loss on the answer only)."""

    def __init__(self, n: int = 32) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        ans = torch.randint(1, 90, (8,), generator=g)
        ids = torch.cat([torch.full((N_IMG,), IMAGE_TOKEN), ans])
        labels = torch.cat([torch.full((N_IMG,), -100), ans])
        return {"input_ids": ids, "labels": labels, "pixel_values": torch.randn(3, 32, 32, generator=g)}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def fake_data():
    return FakeLlavaData
