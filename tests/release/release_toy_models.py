"""Tiny Llava bases built from config (no pretraining) for the fast release/merge unit tests."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.tiny_configs import tiny_vision_text


def tiny_llava_config(text_hidden: int = 32, text_layers: int = 2, vocab: int = 96):
    from transformers import LlavaConfig

    vision, text = tiny_vision_text(16, text_hidden, text_layers, vocab, max_positions=64, pad_token_id=None)
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=vocab - 1,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )


def save_tiny_base(out: Path, seed: int = 0, **kw) -> Path:
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(seed)
    LlavaForConditionalGeneration(tiny_llava_config(**kw)).save_pretrained(out)
    return out


def save_lora_run(base_dir: Path, run_dir: Path, r: int = 4, seed: int = 1) -> Path:
    """A run dir with a stock PEFT adapter whose B factors are non-zero (so merging changes outputs)."""
    import json

    from peft import LoraConfig, get_peft_model
    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(str(base_dir))
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=r".*layers\.\d+\.self_attn\.(q_proj|v_proj)")
    peft_model = get_peft_model(model, cfg)
    torch.manual_seed(seed)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    peft_model.save_pretrained(run_dir / "adapter")
    (run_dir / "run.json").write_text(json.dumps({"base_model": str(base_dir), "method": "lora"}))
    return run_dir
