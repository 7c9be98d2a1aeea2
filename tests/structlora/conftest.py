"""Tiny LLaVA models and batches built from config (no weights, no other project code)."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

torch.set_num_threads(1)

IMAGE_TOKEN = 99
VOCAB = 100
IMAGE_SIZE, PATCH = 16, 8  # 2 x 2 patches + CLS; "default" strategy drops CLS -> 4 image tokens
N_IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2


def tiny_llava(
    seed: int = 0, layers: int = 4, hidden: int = 32, text_hidden: int = 32, text_heads: int = 4
) -> LlavaForConditionalGeneration:
    torch.manual_seed(seed)
    vision = CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
    )
    text = LlamaConfig(
        hidden_size=text_hidden,
        intermediate_size=2 * text_hidden,
        num_hidden_layers=layers,
        num_attention_heads=text_heads,
        num_key_value_heads=text_heads,
        vocab_size=VOCAB,
        max_position_embeddings=64,
    )
    cfg = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=IMAGE_TOKEN,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    return LlavaForConditionalGeneration(cfg).eval()


def tiny_batch(seed: int = 0, batch: int = 2, text_len: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(0, IMAGE_TOKEN - 1, (batch, text_len), generator=g)
    image = torch.full((batch, N_IMAGE_TOKENS), IMAGE_TOKEN)
    input_ids = torch.cat([text[:, :1], image, text[:, 1:]], 1)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g),
        "labels": input_ids.masked_fill(input_ids == IMAGE_TOKEN, -100),
    }


def train_steps(model, steps: int = 3, lr: float = 5e-2, seed: int = 0) -> None:
    """A few AdamW steps (loss + regularizer) so gates, smoothing and modulation become non-trivial."""
    from llava_structlora.structlora import structlora_on_step, structlora_regularizer

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    for step in range(steps):
        structlora_on_step(model, step, steps)
        loss = model(**tiny_batch(seed + step)).loss + structlora_regularizer(model)
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


@pytest.fixture
def tiny():
    return tiny_llava
