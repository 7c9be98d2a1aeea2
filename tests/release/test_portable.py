"""Releases and merged models load the same under transformers 4.57 and 5.x; loads are strict.

The cross-version test installs transformers 4.57 into artifacts/tf4/ (pip --target, cached), runs
the stock-only tests/release/portable_probe.py once under each version and compares logits."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from release_helpers import photo, run_cmd
from tf4_env import ensure_tf4, run_tf4

PROBE = str(Path(__file__).parent / "portable_probe.py")
V5 = ["model.vision_tower.encoder.layers.0.self_attn.q_proj", "model.language_model.layers.1.self_attn.v_proj"]


def test_key_and_target_rewrites_match_both_spellings():
    from llava_structlora.portable import portable_adapter_config, v4_key

    assert v4_key("vision_tower.encoder.layers.0.fc1.weight") == "vision_tower.vision_model.encoder.layers.0.fc1.weight"
    assert (
        v4_key("base_model.model.model.vision_tower.embeddings.x")
        == "base_model.model.model.vision_tower.vision_model.embeddings.x"
    )
    for key in ("vision_tower.vision_model.encoder.a", "language_model.model.layers.0.a", "multi_modal_projector.l.w"):
        assert v4_key(key) == key and v4_key(v4_key(key)) == key  # idempotent, LM keys untouched
    cfg = portable_adapter_config({"target_modules": V5, "rank_pattern": {re.escape(V5[0]): 2}})
    both = V5 + [V5[0].replace("vision_tower.", "vision_tower.vision_model.")]
    for name in both:  # PEFT: re.fullmatch(target_modules, name) for a string
        assert re.fullmatch(cfg["target_modules"], name), name
        assert re.fullmatch(cfg["target_modules"], "base_model.model." + name), name
    for other in (
        "model.vision_tower.encoder.layers.0.self_attn.k_proj",
        "model.language_model.layers.10.self_attn.v_proj",
    ):
        assert not re.fullmatch(cfg["target_modules"], other), other
    (pattern,) = cfg["rank_pattern"]  # PEFT: re.match(rf"(.*\.)?({pattern})$", name)
    assert all(re.match(rf"(.*\.)?({pattern})$", n) for n in both[::2])
    lm_only = portable_adapter_config({"target_modules": V5[1:]})
    assert lm_only["target_modules"] == V5[1:]  # nothing to widen: stays a readable list


def test_tokenizer_and_config_rewrites():
    from llava_structlora.portable import portable_model_config, portable_tokenizer_config

    tok = portable_tokenizer_config(
        {
            "tokenizer_class": "TokenizersBackend",
            "add_prefix_space": False,
            "extra_special_tokens": [],
            "image_token": "<image>",
        },
        "LlamaTokenizer",
    )
    assert tok == {"tokenizer_class": "LlamaTokenizer", "extra_special_tokens": {"image_token": "<image>"}}
    assert portable_tokenizer_config(tok) == tok
    cfg = portable_model_config(
        {"text_config": {"rope_parameters": {"rope_theta": 1e6, "rope_type": "linear", "factor": 2.0}}}
    )
    assert cfg["text_config"]["rope_theta"] == 1e6
    assert cfg["text_config"]["rope_scaling"] == {"rope_type": "linear", "factor": 2.0}


def test_strict_load_names_reinitialised_tensors(tmp_path):
    from release_toy_models import save_tiny_base
    from safetensors.torch import load_file, save_file
    from transformers import LlavaForConditionalGeneration

    from llava_structlora.utils.strict_load import ReinitializedWeightsError, from_pretrained_strict

    base = save_tiny_base(tmp_path / "base")
    from_pretrained_strict(LlavaForConditionalGeneration, base)  # a complete checkpoint passes
    sd = load_file(base / "model.safetensors")
    dropped = sorted(k for k in sd if "vision_tower" in k and "layer_norm1" in k)
    assert dropped
    save_file({k: v for k, v in sd.items() if k not in dropped}, base / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ReinitializedWeightsError, match="missing from the checkpoint") as err:
        from_pretrained_strict(LlavaForConditionalGeneration, base)
    assert "layer_norm1" in str(err.value)


def test_strict_adapter_load_names_unattached_tensors(tiny_bases, tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import LlavaForConditionalGeneration

    from llava_structlora.utils.strict_load import ReinitializedWeightsError, peft_from_pretrained_strict

    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_bases["run"] / "adapter", adapter)
    peft_from_pretrained_strict(LlavaForConditionalGeneration.from_pretrained(str(tiny_bases["base"])), adapter)
    sd = load_file(adapter / "adapter_model.safetensors")
    key = next(k for k in sd if "lora_A" in k)
    sd[key.replace("self_attn", "self_attention")] = sd.pop(key)  # a key that names no module
    save_file(sd, adapter / "adapter_model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ReinitializedWeightsError, match="self_attention"):
        peft_from_pretrained_strict(LlavaForConditionalGeneration.from_pretrained(str(tiny_bases["base"])), adapter)


@pytest.fixture(scope="module")
def vision_lora(smoke_world, tmp_path_factory) -> dict[str, Path]:
    """A base whose first vision layer reaches the LM (2 tower layers, penultimate features) and a
    StructLoRA-style adapter (full module names, vision + LM, per-module rank) saved by v5 PEFT."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoProcessor, LlavaConfig, LlavaForConditionalGeneration

    from llava_structlora.portable import make_adapter_portable, make_portable

    root = tmp_path_factory.mktemp("vision_lora")
    cfg = LlavaConfig.from_pretrained(smoke_world["base"])
    cfg.vision_config.num_hidden_layers = 2
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(cfg)
    model.save_pretrained(root / "raw")
    AutoProcessor.from_pretrained(smoke_world["base"]).save_pretrained(root / "raw")
    shutil.copytree(root / "raw", root / "base")
    report = make_portable(root / "base", tokenizer_class="LlamaTokenizer")
    assert report["renamed_keys"] > 0
    shutil.copy2(root / "raw" / "model.safetensors", root / "raw_weights.safetensors")
    shutil.copytree(root / "base", root / "v5keys")  # portable processor, v5-named weights: the negative control
    shutil.copy2(root / "raw" / "model.safetensors", root / "v5keys" / "model.safetensors")
    names = [n for n, _ in model.named_modules() if re.search(r"layers\.\d+\.self_attn\.(q_proj|v_proj)$", n)]
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=names, rank_pattern={re.escape(names[0]): 2})
    peft_model = get_peft_model(model, lora)
    torch.manual_seed(1)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    peft_model.save_pretrained(root / "adapter_v5")
    shutil.copytree(root / "adapter_v5", root / "adapter")
    make_adapter_portable(root / "adapter")
    return {
        "base": root / "base",
        "v5keys": root / "v5keys",
        "adapter": root / "adapter",
        "adapter_v5": root / "adapter_v5",
    }


def _probe(target: Path | None, out: Path, specs: list[str]) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    args = [PROBE, str(out), str(photo()), *specs]
    res = run_tf4(target, args) if target else run_cmd([sys.executable, *args], project=False)
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads(out.with_suffix(".json").read_text()), load_file(str(out) + ".safetensors")


@pytest.mark.slow
def test_release_and_merged_model_load_identically_under_transformers4(smoke_run, smoke_world, vision_lora, tmp_path):
    target, why = ensure_tf4()
    if target is None:
        pytest.skip(why)
    from llava_structlora.merge import merge_run
    from llava_structlora.release import build_release

    merged = merge_run(smoke_run, tmp_path / "merged")
    release = build_release(smoke_run, tmp_path / "release")
    assert "transformers 4.57.x and 5.23.x" in (release / "README.md").read_text()
    specs = [
        f"merged={merged}",
        f"release={smoke_world['base']}+{release}",
        f"vision={vision_lora['base']}+{vision_lora['adapter']}",
        f"v5adapter={vision_lora['base']}+{vision_lora['adapter_v5']}",
        f"v5keys={vision_lora['v5keys']}",
    ]
    rep5, t5 = _probe(None, tmp_path / "v5", specs)
    rep4, t4 = _probe(target, tmp_path / "v4", specs)
    assert rep4["transformers"].startswith("4.57") and rep5["transformers"].startswith("5.")
    for name in ("merged", "release", "vision"):
        for rep in (rep4, rep5):
            assert not rep[name]["missing_keys"] and not rep[name]["unexpected_keys"], (name, rep[name])
        assert torch.equal(t4[f"{name}.ids"], t5[f"{name}.ids"]), name
        assert rep4[name]["chat"] == rep5[name]["chat"], name  # the chat template reads the same under v4
        # a photo resized from 512x600: v4 resizes with torchvision too (its Fast class), pixels are identical
        assert torch.equal(t4[f"{name}.pix"], t5[f"{name}.pix"]), name
        assert rep4[name]["image_processor"] == "CLIPImageProcessorFast", rep4[name]
        diff = float((t4[f"{name}.logits"] - t5[f"{name}.logits"]).abs().max())
        assert diff <= 1e-4, (name, diff)
        # generate(**processor(...)) runs under both (no token_type_ids under v4) and answers the same
        assert rep4[name]["inputs"] == rep5[name]["inputs"] == ["attention_mask", "input_ids", "pixel_values"]
        assert torch.equal(t4[f"{name}.gen"], t5[f"{name}.gen"]) and rep4[name]["answer"] == rep5[name]["answer"]
    assert rep5["release"]["answer"].strip(), rep5["release"]  # a real answer, not an empty string
    for name in ("release", "vision"):  # every LoRA tensor attached, to the same module, with the same values
        assert rep4[name]["lora"].keys() == rep5[name]["lora"].keys() and rep4[name]["lora"], name
        assert all(abs(rep4[name]["lora"][k] - v) <= 1e-5 for k, v in rep5[name]["lora"].items()), name
    assert any("vision_tower" in k for k in rep4["vision"]["lora"])
    assert rep4["merged"]["chat"] and rep4["release"]["chat"]  # merged model and release carry chat templates
    # the checks are not vacuous: the v5 spelling loses the vision LoRA / the vision tower under v4
    assert set(rep4["v5adapter"]["lora"]) < set(rep5["v5adapter"]["lora"])
    assert float((t4["v5adapter.logits"] - t5["v5adapter.logits"]).abs().max()) > 1e-3
    assert any("vision_tower" in k for k in rep4["v5keys"]["missing_keys"]) and not rep5["v5keys"]["missing_keys"]
