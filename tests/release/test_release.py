"""scripts/release_adapter.sh: the release folder, its loading with stock PEFT in a fresh process,
and the adapter config a real LLaVA-1.5-7B run exports (checked on the meta device)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from release_helpers import REPO, run_cmd

from tests.tiny_configs import llava_7b_config

STOCK = str(Path(__file__).parent / "stock_generate.py")


@pytest.fixture(scope="module")
def release(smoke_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rel") / "release"
    res = run_cmd(
        [
            "bash",
            str(REPO / "scripts" / "release_adapter.sh"),
            str(smoke_run),
            str(out),
            "--push",
            "someone/shapes-structlora",
        ]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "huggingface_hub" in res.stdout and "upload_folder" in res.stdout
    return out


@pytest.mark.slow
def test_release_folder_contents(release, smoke_run, smoke_world):
    from llava_structlora.release import verify_checksums

    names = {p.name for p in release.iterdir()}
    assert {
        "adapter_config.json",
        "adapter_model.safetensors",
        "README.md",
        "run.json",
        "metrics.json",
        "SHA256SUMS",
        "PUSH.md",
    } <= names
    cfg = json.loads((release / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(smoke_world["base"].resolve())
    from transformers import AutoProcessor

    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe it"}]}]
    processor = AutoProcessor.from_pretrained(release)  # the release carries the processor + chat templates
    assert processor.apply_chat_template(msgs, add_generation_prompt=True) == "USER: <image>\ndescribe it ASSISTANT:"
    assert processor.apply_chat_template(msgs, chat_template="vicuna_v1", add_generation_prompt=True).startswith(
        "A chat between a curious user"
    )
    card = (release / "README.md").read_text()
    front = card.split("\n---\n")[0]
    assert card.startswith("---\nlibrary_name: peft\n") and "base_model:" not in front  # a local base has no hub id
    for section in (
        "## Method",
        "## How to load",
        "## What the adapter changes",
        "## Training configuration",
        "## Data",
        "## Evaluation",
        "## License",
        "Protocol: COCO captions",
    ):
        assert section in card, section
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)  # run as written: test_card_snippet.py
    assert "PeftModel.from_pretrained" in snippet and "model.generate(**inputs" in snippet
    assert "conversation format `vicuna_v1_nosys`" in card
    cider = json.loads((smoke_run / "metrics.json").read_text())["CIDEr"]
    assert f"| CIDEr | {cider:.4g} |" in card  # from metrics.json, not typed
    assert run_cmd(["sha256sum", "-c", "SHA256SUMS"], cwd=str(release)).returncode == 0
    assert verify_checksums(release) == []
    (release / "run.json").write_text((release / "run.json").read_text() + " ")
    assert verify_checksums(release) == ["run.json"]


@pytest.mark.slow
def test_release_loads_with_stock_peft_in_fresh_process_and_reproduces_metrics(release, smoke_run, tmp_path):
    from llava_structlora.metrics import score_captions

    recorded = json.loads((release / "metrics.json").read_text())
    data = Path(json.loads((release / "run.json").read_text())["config"]["DataArguments"]["data_root"]) / "coco"
    split = recorded["split"]
    base = json.loads((release / "adapter_config.json").read_text())["base_model_name_or_path"]
    images = (data / json.loads((data / "manifest.json").read_text())["image_folder"]).resolve()
    res = run_cmd(
        [
            sys.executable,
            STOCK,
            "--model",
            f"release={base}+{release}",
            "--questions",
            str(data / f"{split}_questions.jsonl"),
            "--images",
            str(images),
            "--max-new-tokens",
            "48",
            "--out",
            str(tmp_path / "gen"),
        ],
        project=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    answers = json.loads((tmp_path / "gen.release.json").read_text())
    assert len(answers) == recorded["n"]
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": a["question_id"], "caption": a["text"]} for a in answers]))
    # METEOR (16 s of Java) is not what is compared here
    scored = score_captions(data / f"{split}_annotations.json", results, meteor=False)
    assert scored["CIDEr"] == pytest.approx(recorded["CIDEr"], abs=1e-6)
    assert scored["Bleu_4"] == pytest.approx(recorded["Bleu_4"], abs=1e-6)


def materialize_adapter(ctrl) -> None:
    """Give the StructLoRA side (factors, gates, coordinator) real CPU values; base weights stay on meta."""
    gen = torch.Generator().manual_seed(0)
    for mod in [ctrl, *ctrl.layers]:
        for name, sub in mod.named_modules():
            if "base_layer" in name.split("."):
                continue
            for pn, p in list(sub.named_parameters(recurse=False)):
                if p.device.type == "meta":
                    setattr(
                        sub,
                        pn,
                        torch.nn.Parameter(torch.randn(p.shape, generator=gen) * 0.02, requires_grad=p.requires_grad),
                    )
            for bn, b in list(sub.named_buffers(recurse=False)):
                if b is not None and b.device.type == "meta":
                    sub._buffers[bn] = torch.zeros(b.shape, dtype=b.dtype)


@pytest.mark.slow
def test_llava_7b_meta_release_config(tmp_path):
    """What a real 7B StructLoRA run exports (same export_peft_adapter call as the trainer), released."""
    from peft import LoraConfig, inject_adapter_in_model
    from transformers import LlavaForConditionalGeneration

    from llava_structlora.merge import adapter_shapes, shape_diff
    from llava_structlora.portable import BOTH_TOWER_RX, v4_key
    from llava_structlora.release import build_release
    from llava_structlora.structlora import StructLoRAConfig, apply_structlora, export_peft_adapter, get_controller

    cfg7 = llava_7b_config()
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(cfg7)
    apply_structlora(model, StructLoRAConfig(r=8))
    ctrl = get_controller(model)
    materialize_adapter(ctrl)
    run = tmp_path / "run"
    export_peft_adapter(model, run / "adapter")
    cfg7.save_pretrained(tmp_path / "llava-1.5-7b-hf")  # config only: what the release needs to know the base
    (run / "run.json").write_text(
        json.dumps(
            {
                "base_model": str(tmp_path / "llava-1.5-7b-hf"),
                "method": "structlora",
                "config": {"DataArguments": {"task": "coco"}},
            }
        )
    )
    rel = build_release(run, tmp_path / "release")
    acfg = json.loads((rel / "adapter_config.json").read_text())
    assert acfg["base_model_name_or_path"] == "llava-hf/llava-1.5-7b-hf"
    # CLIP layer 23 is above vision_feature_layer=-2 (dead): not adapted, not exported
    expected = {f"model.vision_tower.encoder.layers.{i}.self_attn.{p}" for i in range(23) for p in ("q_proj", "v_proj")}
    expected |= {f"model.language_model.layers.{i}.self_attn.{p}" for i in range(32) for p in ("q_proj", "v_proj")}
    assert len(expected) == 110  # target_modules: one regex matching the v4 and v5 spelling (portable.py)
    v4_names = {v4_key(n) for n in expected}
    assert all(re.fullmatch(acfg["target_modules"], n) for n in expected | v4_names)
    ranks = {
        re.sub(r"\\(.)", r"\1", k.replace(BOTH_TOWER_RX, "vision_tower.")): v for k, v in acfg["rank_pattern"].items()
    }
    assert set(ranks) == expected and all(8 <= r <= 8 * (1 + 8) for r in ranks.values())
    # stock PEFT reads that config into LoRA layers of exactly the exported shapes, on a fresh 7B
    with torch.device("meta"):
        fresh = LlavaForConditionalGeneration(cfg7)
    inject_adapter_in_model(LoraConfig.from_pretrained(str(rel)), fresh)
    injected = {
        n: (tuple(m.lora_A["default"].weight.shape), tuple(m.lora_B["default"].weight.shape))
        for n, m in fresh.named_modules()
        if hasattr(m, "lora_A") and "default" in m.lora_A
    }
    shapes = adapter_shapes(rel)
    assert set(injected) == expected
    for name, (a, b) in injected.items():
        key = f"base_model.model.{v4_key(name)}"
        assert shapes[f"{key}.lora_A.weight"] == a and shapes[f"{key}.lora_B.weight"] == b
    assert shape_diff(rel, cfg7.to_dict()) == []
    cfg13 = llava_7b_config(hidden=5120, layers=40, heads=40, ffn=13824)  # a 7B adapter on a 13B base
    assert any("base layer is 5120x5120" in d for d in shape_diff(rel, cfg13.to_dict()))
