"""load_base_model: one loader for training, evaluation and merge; loads straight into the asked dtype."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
import torch

from llava_structlora.modeling import (
    ModelLoadError,
    base_model_class,
    check_attn_implementation,
    check_bits,
    is_quantized,
    load_base_model,
    quantization_config,
)

HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None
HAS_FLASH = importlib.util.find_spec("flash_attn") is not None


@pytest.mark.parametrize(
    "dtype,want",
    [("bf16", torch.bfloat16), ("fp16", torch.float16), ("float32", torch.float32), (torch.bfloat16, torch.bfloat16)],
)
def test_loads_in_the_asked_dtype(llava_base, dtype, want):
    model = load_base_model(llava_base, dtype=dtype)
    assert {p.dtype for p in model.parameters()} == {want}
    ref = load_base_model(llava_base, dtype="fp32").state_dict()
    for name, t in model.state_dict().items():  # the same weights, only rounded
        assert torch.equal(t, ref[name].to(want)), name


def test_llava_next_resolves_through_the_config(llava_base, llava_next_base):
    from transformers import LlavaForConditionalGeneration, LlavaNextForConditionalGeneration

    assert type(load_base_model(llava_base, dtype="bf16")) is LlavaForConditionalGeneration
    nxt = load_base_model(llava_next_base, dtype="bf16")
    assert type(nxt) is LlavaNextForConditionalGeneration
    assert next(nxt.parameters()).dtype == torch.bfloat16
    assert base_model_class(nxt.config) is LlavaNextForConditionalGeneration


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_attention_backend_is_applied(llava_base, impl):
    model = load_base_model(llava_base, dtype="fp32", attn_implementation=impl)
    assert model.config.text_config._attn_implementation == impl
    assert model.config.vision_config._attn_implementation == impl


def test_unknown_or_missing_attention_backend_is_a_clear_error(llava_base):
    with pytest.raises(ModelLoadError, match="expected one of"):
        check_attn_implementation("flash")
    if HAS_FLASH:
        pytest.skip("flash-attn is installed here: the not-installed message cannot be provoked")
    with pytest.raises(ModelLoadError, match="flash-attn package is not installed.*use sdpa"):
        load_base_model(llava_base, dtype="bf16", attn_implementation="flash_attention_2")


def test_bad_paths_and_dtypes(tmp_path, llava_base):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_base_model(tmp_path, dtype="bf16")
    with pytest.raises(ModelLoadError, match="unknown dtype 'bf17'"):
        load_base_model(llava_base, dtype="bf17")


def test_bits_values_and_config():
    with pytest.raises(ModelLoadError, match="expected 4 or 8"):
        check_bits(3)
    if not HAS_BNB:
        with pytest.raises(ModelLoadError, match="needs bitsandbytes"):
            check_bits(4)
        return
    q4 = quantization_config(4, torch.bfloat16)
    assert q4.load_in_4bit and q4.bnb_4bit_quant_type == "nf4" and q4.bnb_4bit_compute_dtype == torch.bfloat16
    skip = " ".join(q4.llm_int8_skip_modules)  # regex patterns: the vision tower and projector stay unquantized
    assert "vision_tower" in skip and "multi_modal_projector" in skip
    assert quantization_config(8, torch.bfloat16).load_in_8bit


def test_plain_model_is_not_quantized(llava_base):
    assert not is_quantized(load_base_model(llava_base, dtype="bf16"))


def test_merge_refuses_a_quantized_base(llava_base, tmp_path):
    from llava_structlora.merge import QuantizedMergeError, check_not_quantized

    check_not_quantized(llava_base)
    q = tmp_path / "q"
    shutil.copytree(llava_base, q)
    cfg = json.loads((q / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True, "load_in_8bit": False}
    (q / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(QuantizedMergeError, match="refusing to merge into .*stored quantized.*load_in_4bit=True"):
        check_not_quantized(q)


@pytest.mark.parametrize("fixture", ["llava_base", "llava_next_base"])
def test_pread_load_equals_stock_from_pretrained(request, fixture, tmp_path):
    """The low-memory path (pread slices) loads exactly what stock from_pretrained loads, sharded or not."""
    from transformers import GenerationConfig

    src = request.getfixturevalue(fixture)
    sharded = tmp_path / "sharded"
    stock = base_model_class(load_base_model(src, dtype="fp32").config).from_pretrained(src, dtype=torch.bfloat16)
    stock.generation_config = GenerationConfig(max_new_tokens=7)
    stock.save_pretrained(sharded, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    for path in (src, sharded):
        got = load_base_model(path, dtype="bf16")
        ref = type(got).from_pretrained(path, dtype=torch.bfloat16)
        assert got.state_dict().keys() == ref.state_dict().keys()
        for k, v in ref.state_dict().items():
            assert torch.equal(got.state_dict()[k], v), k
        assert got.name_or_path == str(path)
    assert load_base_model(sharded, dtype="bf16").generation_config.max_new_tokens == 7
