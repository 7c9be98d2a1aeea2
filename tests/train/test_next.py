"""LLaVA-NeXT end to end on a tiny NeXT built from config: the real training entry point (anyres
dataset + collator), StructLoRA and LoRA, then the stock PEFT adapter reloads on a fresh base and
the merged model (llava_structlora.merge) gives the same logits as base + adapter, within 1e-4."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.next_world import SIZES, save_tiny_next  # noqa: E402

TOL = 1e-4
METHODS = ("structlora", "lora")


@pytest.fixture(scope="module")
def next_base(tmp_path_factory):
    return save_tiny_next(tmp_path_factory.mktemp("next"))


def _train(next_base, out, method: str, *flags: str):
    from llava_structlora.train.main import run

    run(
        [
            "--model_name_or_path",
            str(next_base["base"]),
            "--data_path",
            str(next_base["data"]),
            "--output_dir",
            str(out),
            "--method",
            method,
            "--lora_r",
            "4",
            "--lora_alpha",
            "8",
            "--learning_rate",
            "2e-2",
            "--max_steps",
            "4",
            "--per_device_train_batch_size",
            "4",
            "--seed",
            "0",
            "--save_strategy",
            "no",
            "--report_to",
            "none",
            "--plots",
            "false",
            "--disable_tqdm",
            "true",
            "--logging_steps",
            "1",
            "--run_eval",
            "false",
            *flags,
        ]
    )
    return out


def _batch(next_base):
    from transformers import AutoProcessor

    from llava_structlora.data import DataCollatorForSupervisedDataset, LazySupervisedDataset

    proc = AutoProcessor.from_pretrained(next_base["base"])
    ds = LazySupervisedDataset(next_base["data"], proc)
    return DataCollatorForSupervisedDataset(proc.tokenizer.pad_token_id)([ds[i] for i in range(len(SIZES))])


def _logits(model, batch):
    with torch.no_grad():
        return model.eval()(**batch).logits


@pytest.fixture(scope="module")
def runs(next_base, tmp_path_factory) -> dict:
    torch.set_num_threads(1)
    return {m: _train(next_base, tmp_path_factory.mktemp(m) / "run", m) for m in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_training_ran_on_anyres_batches(runs, next_base, method):
    from transformers import AutoProcessor

    from llava_structlora.data import is_anyres

    assert is_anyres(AutoProcessor.from_pretrained(next_base["base"]))
    run = json.loads((runs[method] / "run.json").read_text())
    assert run["base_model"] == str(next_base["base"].resolve())
    batch = _batch(next_base)
    assert batch["pixel_values"].dim() == 5 and batch["image_sizes"].tolist() == [list(s) for s in SIZES]
    cfg = json.loads((runs[method] / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA"


@pytest.mark.parametrize("method", METHODS)
def test_stock_peft_reload_and_exact_merge(runs, next_base, tmp_path, method):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, LlavaNextForConditionalGeneration

    from llava_structlora.merge import merge_run

    batch = _batch(next_base)
    base = AutoModelForImageTextToText.from_pretrained(next_base["base"], dtype=torch.float32)
    assert type(base) is LlavaNextForConditionalGeneration
    base_logits = _logits(base, batch)
    adapted = _logits(PeftModel.from_pretrained(base, str(runs[method] / "adapter")), batch)
    assert (adapted - base_logits).abs().max() > 1e-3  # the adapter changes the model
    merged_dir = merge_run(runs[method], tmp_path / "merged")
    merged = AutoModelForImageTextToText.from_pretrained(merged_dir, dtype=torch.float32)
    assert type(merged) is LlavaNextForConditionalGeneration
    assert (_logits(merged, batch) - adapted).abs().max() <= TOL


def test_structlora_state_merges_like_its_export(runs, next_base):
    """The StructLoRA model itself (gates + coordinator), its in-place merge and its PEFT export agree."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from llava_structlora.structlora import get_controller, load_structlora, merge_structlora

    def fresh():
        return AutoModelForImageTextToText.from_pretrained(next_base["base"], dtype=torch.float32)

    run_dir, batch = runs["structlora"], _batch(next_base)
    model = load_structlora(fresh(), run_dir / "structlora")
    ctrl = get_controller(model)
    assert {n.tower for n in ctrl.nodes} == {"vision", "language"}  # the joint graph spans both towers
    assert ctrl.graph.kinds()["bridge"] > 0
    live = _logits(model, batch)
    peft = _logits(PeftModel.from_pretrained(fresh(), str(run_dir / "adapter")), batch)
    merged = _logits(merge_structlora(model), batch)
    assert (merged - live).abs().max() <= TOL
    # the export is lossless (relative_error 0); unmerged PEFT sums in another order: fp32 rounding only
    assert json.loads((run_dir / "adapter" / "structlora_export.json").read_text())["relative_error"] == 0.0
    assert (peft - live).abs().max() <= TOL * max(1.0, float(live.abs().max()))


def test_merge_refuses_a_llava_1_5_base_with_the_same_towers(runs, next_base, tmp_path):
    """Shapes alone cannot tell v1.5 from v1.6 (same towers): the recorded base's model_type does."""
    from transformers import AutoConfig, LlavaConfig, LlavaForConditionalGeneration

    from llava_structlora.merge import BaseMismatchError, merge_run

    nxt = AutoConfig.from_pretrained(next_base["base"])
    cfg = LlavaConfig(
        vision_config=nxt.vision_config.to_dict(),
        text_config=nxt.text_config.to_dict(),
        image_token_index=nxt.image_token_id,
        vision_feature_layer=nxt.vision_feature_layer,
        vision_feature_select_strategy=nxt.vision_feature_select_strategy,
    )
    LlavaForConditionalGeneration(cfg).save_pretrained(tmp_path / "llava15")
    with pytest.raises(BaseMismatchError, match="model_type"):
        merge_run(runs["lora"], tmp_path / "merged", base=tmp_path / "llava15")
