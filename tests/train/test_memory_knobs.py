"""7B knobs of the training config: base load dtype, attention backend, QLoRA and checkpointing checks."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from llava_structlora.train.cli import parse_args
from llava_structlora.train.config import ConfigError
from llava_structlora.train.methods import base_load_dtype, build_model


def _args(base, *flags):
    return parse_args(["--output_dir", "/tmp/unused", "--model_name_or_path", str(base), *flags], check_paths=False)


@pytest.mark.parametrize(
    "flags,method,want",
    [
        ((), "structlora", torch.float32),
        (("--bf16", "true"), "structlora", torch.bfloat16),
        (("--fp16", "true"), "lora", torch.float16),
        (("--bf16", "true"), "full", torch.float32),
    ],
)
def test_base_load_dtype_follows_the_training_dtype(tiny_base, flags, method, want):
    m, _, _, t = _args(tiny_base, "--method", method, "--use_cpu", "true", *flags)
    assert base_load_dtype(m, t) == want


@pytest.mark.parametrize("method", ["structlora", "lora"])
def test_bf16_base_keeps_fp32_adapters(tiny_base, method):
    m, _, s, t = _args(tiny_base, "--method", method)
    model = build_model(m, s, t.seed, total_steps=100, dtype=torch.bfloat16)
    trainable = {p.dtype for p in model.parameters() if p.requires_grad}
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert trainable == {torch.float32}, "factors, gates and coordinator must stay fp32 for the optimizer"
    assert frozen == {torch.bfloat16}


def test_bf16_structlora_forward_runs_and_returns_the_base_dtype(tiny_base):
    m, _, s, t = _args(tiny_base, "--method", "structlora")
    model = build_model(m, s, t.seed, total_steps=100, dtype=torch.bfloat16).train()
    ids = torch.tensor([[1] + [99] * 16 + [5, 6, 7]])
    out = model(input_ids=ids, pixel_values=torch.randn(1, 3, 32, 32, dtype=torch.bfloat16), labels=ids)
    assert out.logits.dtype == torch.bfloat16 and torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(g.dtype == torch.float32 for g in grads)


def test_attention_backend_flag(tiny_base):
    m, *_ = _args(tiny_base, "--attn_implementation", "eager")
    assert m.attn_implementation == "eager"
    with pytest.raises(ConfigError, match="attn_implementation='flashy'"):
        _args(tiny_base, "--attn_implementation", "flashy")
    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(ConfigError, match="flash-attn package is not installed"):
            _args(tiny_base, "--attn_implementation", "flash_attention_2")


def test_bits_flag_is_checked_before_launch(tiny_base):
    with pytest.raises(ConfigError, match="expected 4 or 8"):
        _args(tiny_base, "--bits", "2")
    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(ConfigError, match="needs bitsandbytes"):
            _args(tiny_base, "--bits", "4")
    else:
        with pytest.raises(ConfigError, match="cannot be fully fine-tuned"):
            _args(tiny_base, "--bits", "4", "--method", "full")


def test_checkpointing_is_non_reentrant_and_reentrant_is_refused_for_structlora(tiny_base):
    *_, t = _args(tiny_base, "--gradient_checkpointing", "true")
    assert t.activation_checkpointing and t.activation_checkpointing_kwargs == {"use_reentrant": False}
    with pytest.raises(ConfigError, match="non-reentrant"):
        _args(
            tiny_base, "--gradient_checkpointing", "true", "--gradient_checkpointing_kwargs", '{"use_reentrant": true}'
        )
    _args(
        tiny_base,
        "--method",
        "lora",
        "--gradient_checkpointing",
        "true",
        "--gradient_checkpointing_kwargs",
        '{"use_reentrant": true}',
    )  # PEFT LoRA works with reentrant checkpointing (input grads enabled)


def test_zero3_refusals_name_the_part_that_cannot_work():
    from llava_structlora.train.zero3 import zero3_refusal

    assert zero3_refusal(None) is None
    assert "bitsandbytes" in zero3_refusal(4) and "zero2" in zero3_refusal(8)


@pytest.mark.parametrize("method", ["structlora", "lora"])
def test_qlora_4bit_trains_through_the_quantized_matmul(tiny_base, method):
    if importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("bitsandbytes not installed (it is pinned in requirements.txt); the refusal is tested above")
    m, _, s, t = _args(tiny_base, "--method", method, "--bits", "4", "--bf16", "true", "--use_cpu", "true")
    model = build_model(m, s, t.seed, total_steps=100, dtype=torch.bfloat16)
    kinds = {n: type(x).__name__ for n, x in model.named_modules() if n.endswith("q_proj.base_layer")}
    assert {k for n, k in kinds.items() if "language_model" in n} == {"Linear4bit"}
    assert {k for n, k in kinds.items() if "vision_tower" in n} == {"Linear"}, "CLIP stays unquantized"
    ids = torch.tensor([[1] + [99] * 16 + [5, 6, 7]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, pixel_values=torch.randn(1, 3, 32, 32), labels=ids)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(g.dtype == torch.float32 for g in grads) and sum(g.abs().sum() for g in grads) > 0
