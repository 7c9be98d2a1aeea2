"""Config-only LLaVA shapes that several test dirs build on (no weights, no downloads).

Imported as `tests.tiny_configs` (tests/conftest.py puts the repository root on sys.path).
"""

from __future__ import annotations

from typing import Any, Optional


def tiny_vision_text(
    patch_size: int = 8,
    text_hidden: int = 32,
    text_layers: int = 2,
    vocab: int = 100,
    max_positions: int = 128,
    pad_token_id: Optional[int] = 0,
) -> tuple[Any, Any]:
    """A 2-layer, 32-wide CLIP tower on 32 px images (8 px patches: 16 patches + CLS) and a small Llama."""
    from transformers import CLIPVisionConfig, LlamaConfig

    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=patch_size,
        projection_dim=32,
    )
    text = LlamaConfig(
        hidden_size=text_hidden,
        intermediate_size=64,
        num_hidden_layers=text_layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=vocab,
        max_position_embeddings=max_positions,
        pad_token_id=pad_token_id,
    )
    return vision, text


def llava_7b_config(hidden: int = 4096, layers: int = 32, heads: int = 32, ffn: int = 11008) -> Any:
    """LLaVA-1.5-7B (llava-hf layout): CLIP ViT-L/14-336 + 32-layer 4096-wide Llama, vocab 32064 (13B: 5120/40/40)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
    )
    text = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        vocab_size=32064,
        max_position_embeddings=4096,
    )
    return LlavaConfig(vision_config=vision, text_config=text, image_token_id=32000, vocab_size=32064)
