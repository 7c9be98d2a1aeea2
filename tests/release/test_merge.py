"""scripts/merge_adapter.sh: a merged model that stock transformers loads, equal to base + adapter;
a wrong base is refused with every difference named."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from release_helpers import REPO, run_cmd

STOCK = str(Path(__file__).parent / "stock_generate.py")


def test_wrong_base_refused_names_the_difference(tiny_bases, tmp_path):
    from llava_structlora.merge import BaseMismatchError, check_base, main

    check_base(tiny_bases["run"], tiny_bases["base"])  # the right base passes
    with pytest.raises(BaseMismatchError) as wider:
        check_base(tiny_bases["run"], tiny_bases["wider"])
    msg = str(wider.value)
    assert "text_config.hidden_size: run was trained on 32, this base has 48" in msg
    assert "self_attn.q_proj.lora_A: adapter shape (4, 32)" in msg
    with pytest.raises(BaseMismatchError, match="text_config.num_hidden_layers: run was trained on 2, this base has 3"):
        check_base(tiny_bases["run"], tiny_bases["deeper"])
    # the CLI refuses before writing anything
    assert main([str(tiny_bases["run"]), str(tmp_path / "merged"), "--base", str(tiny_bases["wider"])]) == 2
    assert not (tmp_path / "merged").exists()


def test_shape_check_without_the_original_base(tiny_bases, tmp_path):
    """A release downloaded elsewhere has no trained-on base dir: the shape check still refuses."""
    from llava_structlora.merge import BaseMismatchError, check_base

    run = tmp_path / "run"
    shutil.copytree(tiny_bases["run"], run)
    (run / "run.json").write_text(json.dumps({"base_model": "/nonexistent/base"}))
    with pytest.raises(BaseMismatchError, match=r"base layer is 48x48 \(expects \(4, 48\)\)"):
        check_base(run, tiny_bases["wider"])


def test_missing_adapter_is_a_clear_error(tmp_path):
    from llava_structlora.merge import adapter_dir_of

    with pytest.raises(FileNotFoundError, match="no PEFT adapter found"):
        adapter_dir_of(tmp_path)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="adapter_model.safetensors missing"):
        adapter_dir_of(tmp_path)


@pytest.mark.slow
def test_merged_model_loads_stock_and_generates_like_base_plus_adapter(smoke_run, smoke_world, tmp_path):
    merged = tmp_path / "merged"
    res = run_cmd(
        ["bash", str(REPO / "scripts" / "merge_adapter.sh"), str(smoke_run), str(merged), "--max-shard-size", "150KB"]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    shards = sorted(merged.glob("model-*.safetensors"))
    assert len(shards) >= 2 and (merged / "model.safetensors.index.json").exists()
    assert (merged / "processor_config.json").exists() or (merged / "preprocessor_config.json").exists()
    assert (merged / "tokenizer.json").exists() or (merged / "tokenizer.model").exists()
    from transformers import AutoProcessor

    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe it"}]}]
    assert json.loads((merged / "merge_info.json").read_text())["conv_template"] == "vicuna_v1_nosys"
    prompt = AutoProcessor.from_pretrained(merged).apply_chat_template(msgs, add_generation_prompt=True)
    assert prompt == "USER: <image>\ndescribe it ASSISTANT:"  # the run's format, generated chat template
    data = smoke_world["data"] / "coco"
    common = [
        "--questions",
        str(data / "val_questions.jsonl"),
        "--images",
        str((data / json.loads((data / "manifest.json").read_text())["image_folder"]).resolve()),
        "--limit",
        "6",
        "--max-new-tokens",
        "16",
    ]
    res = run_cmd(
        [
            sys.executable,
            STOCK,
            "--model",
            f"merged={merged}",
            "--model",
            f"adapter={smoke_world['base']}+{smoke_run / 'adapter'}",
            "--model",
            f"base={smoke_world['base']}",
            *common,
            "--out",
            str(tmp_path / "gen"),
        ],
        project=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    from safetensors.torch import load_file

    outs = {
        name: (json.loads((tmp_path / f"gen.{name}.json").read_text()), load_file(tmp_path / f"gen.{name}.safetensors"))
        for name in ("merged", "adapter", "base")
    }
    (m_ans, m_log), (a_ans, a_log), (_b_ans, b_log) = outs["merged"], outs["adapter"], outs["base"]
    assert [a["tokens"] for a in m_ans] == [a["tokens"] for a in a_ans]
    diff = max(float((m_log[k] - a_log[k]).abs().max()) for k in m_log)
    assert diff <= 1e-4, diff
    changed = max(float((m_log[k] - b_log[k]).abs().max()) for k in m_log)
    assert changed > 1e-3, f"the adapter does not change the base's logits ({changed}): the test would be vacuous"


@pytest.mark.slow
def test_merge_script_refuses_wrong_base(smoke_run, tiny_bases, tmp_path):
    res = run_cmd(
        [
            "bash",
            str(REPO / "scripts" / "merge_adapter.sh"),
            str(smoke_run),
            str(tmp_path / "m"),
            "--base",
            str(tiny_bases["base"]),
        ]
    )
    assert res.returncode == 2
    assert "refusing to merge" in res.stderr and "config text_config.hidden_size" in res.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("kind", ["adalora", "dora", "projector"])
def test_shape_check_understands_every_peft_baseline(kind, tiny_bases, tmp_path):
    """AdaLoRA (lora_E), DoRA (magnitude vectors) and a fully trained projector (modules_to_save)."""
    from peft import AdaLoraConfig, LoraConfig, get_peft_model
    from transformers import LlavaForConditionalGeneration

    from llava_structlora.merge import BaseMismatchError, check_base

    targets = r".*layers\.\d+\.self_attn\.(q_proj|v_proj)"
    cfg = {
        "adalora": AdaLoraConfig(init_r=6, target_r=4, total_step=10, target_modules=targets),
        "dora": LoraConfig(r=4, use_dora=True, target_modules=targets),
        "projector": LoraConfig(r=4, target_modules=targets, modules_to_save=["multi_modal_projector"]),
    }[kind]
    model = get_peft_model(LlavaForConditionalGeneration.from_pretrained(str(tiny_bases["base"])), cfg)
    model.save_pretrained(tmp_path / "run" / "adapter")
    check_base(tmp_path / "run", tiny_bases["base"])
    with pytest.raises(BaseMismatchError, match="expects"):
        check_base(tmp_path / "run", tiny_bases["wider"])
