"""load_model merges adapters (no wrapper left) and reproduces the adapted model's logits."""

import pytest
import torch

from llava_structlora.evaluation.load import ModelLoadError, adapter_kind, load_model


def _inputs(processor):
    from llava_structlora.data import encode_prompt

    ids = torch.tensor([encode_prompt("is there a red circle?", processor)])
    size = processor.image_processor.crop_size["height"]
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values": torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1)),
    }


@pytest.fixture(scope="module")
def peft_run(smoke, tmp_path_factory):
    """A run dir with a stock PEFT adapter/ whose B factors are non-zero."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(0)
    model = LlavaForConditionalGeneration.from_pretrained(smoke["base"], dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=r".*self_attn\.(q_proj|v_proj)", init_lora_weights=False)
    peft_model = get_peft_model(model, cfg).eval()
    run = tmp_path_factory.mktemp("run")
    peft_model.save_pretrained(run / "adapter")
    return run, peft_model


def test_peft_adapter_is_merged_and_exact(smoke, peft_run):
    run, peft_model = peft_run
    merged, processor = load_model(smoke["base"], run / "adapter")
    assert not any("lora" in n for n, _ in merged.named_modules())
    batch = _inputs(processor)
    with torch.no_grad():
        ref = peft_model(**batch).logits
        got = merged(**batch).logits
        base = load_model(smoke["base"])[0](**batch).logits
    assert torch.allclose(got, ref, atol=1e-5)
    assert not torch.allclose(got, base, atol=1e-3), "the adapter must change the outputs"


def test_adapter_kinds(smoke, peft_run, tmp_path):
    run, _ = peft_run
    assert adapter_kind(None) == ("none", None)
    assert adapter_kind(run) == ("peft", run / "adapter")  # a training run dir
    assert adapter_kind(smoke["random"]) == ("merged", smoke["random"])
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(ModelLoadError, match="neither a PEFT adapter"):
        adapter_kind(tmp_path)
    with pytest.raises(ModelLoadError, match="not a directory"):
        adapter_kind(tmp_path / "missing")


def test_merged_model_dir_replaces_base(smoke):
    model, _ = load_model(smoke["base"], smoke["random"])
    rand, _ = load_model(smoke["random"])
    for (n, a), (_, b) in zip(model.state_dict().items(), rand.state_dict().items()):
        assert torch.equal(a, b), n


def test_structlora_dir_is_merged_and_exact(smoke, tmp_path):
    from transformers import LlavaForConditionalGeneration

    from llava_structlora.structlora import StructLoRAConfig, apply_structlora, merge_structlora, save_structlora

    torch.manual_seed(0)
    model = LlavaForConditionalGeneration.from_pretrained(smoke["base"], dtype=torch.float32)
    apply_structlora(model, StructLoRAConfig(r=4, alpha=8))
    with torch.no_grad():  # non-zero B factors (zero at init) so the merge matters
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    save_structlora(model, tmp_path / "run" / "structlora")
    assert adapter_kind(tmp_path / "run") == ("structlora", tmp_path / "run" / "structlora")
    loaded, processor = load_model(smoke["base"], tmp_path / "run")
    assert not any("structlora" in type(m).__name__.lower() for m in loaded.modules())
    batch = _inputs(processor)
    with torch.no_grad():
        ref = merge_structlora(model.eval())(**batch).logits
        got = loaded(**batch).logits
        base = load_model(smoke["base"])[0](**batch).logits
    assert torch.allclose(got, ref, atol=1e-5)
    assert not torch.allclose(got, base, atol=1e-3)
