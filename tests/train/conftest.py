"""Tiny Llava built from config (no downloads) and an in-memory dataset for the Trainer tests."""

from __future__ import annotations

import pytest
import torch

from tests.tiny_configs import tiny_vision_text

IMAGE_TOKEN = 99
N_IMG = 16  # 32 px / patch 8 = 16 patches (CLS dropped by the "default" strategy)


def tiny_llava_config(vision_feature_layer: int = -1):
    from transformers import LlavaConfig

    vc, tc = tiny_vision_text()
    return LlavaConfig(
        vision_config=vc,
        text_config=tc,
        image_token_index=IMAGE_TOKEN,
        vision_feature_layer=vision_feature_layer,
        vision_feature_select_strategy="default",
    )


def _save_tiny_base(tmp_path_factory, vision_feature_layer: int):
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_base")
    LlavaForConditionalGeneration(tiny_llava_config(vision_feature_layer)).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    return _save_tiny_base(tmp_path_factory, -1)


@pytest.fixture(scope="session")
def tiny_base_layer_m2(tmp_path_factory):
    """LLaVA-1.5 reads vision features from layer -2: the last CLIP layer's adapters get no grad."""
    return _save_tiny_base(tmp_path_factory, -2)


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
