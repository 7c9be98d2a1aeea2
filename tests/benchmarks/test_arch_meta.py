"""llava-v1.6-vicuna-7b (LLaVA-NeXT) on the meta device: StructLoRA's targets span both towers, the
PEFT LoRA baseline adapts exactly the same linears, and the coordinator stays a rounding error of
LoRA's parameter count (the numbers benchmarks/arch_meta.py records into docs/RESULTS.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.arch_meta import PUBLISHED, adapter_budget, markdown, published_config  # noqa: E402

NEXT_7B = "llava-hf/llava-v1.6-vicuna-7b-hf"


@pytest.fixture(scope="module")
def budgets() -> dict:
    return {hub: adapter_budget(hub, rank=8, coordinator="gnn") for hub in PUBLISHED}


def test_published_next_config_resolves_to_the_next_class():
    cfg = published_config(NEXT_7B)
    assert cfg.model_type == "llava_next" and cfg.image_grid_pinpoints[2] == [672, 672]
    assert cfg.text_config.num_hidden_layers == 32 and cfg.vision_config.num_hidden_layers == 24


def test_next_7b_targets_and_parameter_ratio(budgets):
    """q/v of 32 LM layers + CLIP layers 0..22 (layer 23 sits above vision_feature_layer=-2: never adapted)."""
    b = budgets[NEXT_7B]
    assert b["model_class"] == "LlavaNextForConditionalGeneration"
    assert b["targets"] == 110 and b["targets_by_tower"] == {"vision": 46, "language": 64, "other": 0}
    assert b["same_targets_as_lora"]
    assert b["lora_trainable"] == b["structlora_factors"] == 23 * 2 * 8 * 2048 + 32 * 2 * 8 * 8192
    assert b["structlora_trainable"] == b["structlora_factors"] + b["structlora_gates"] + b["structlora_coordinator"]
    assert b["structlora_gates"] == 110 * 8
    assert 0 < b["coordinator_over_lora"] < 0.01
    assert b["graph_edges"]["bridge"] == 4 and b["graph_edges"]["adjacent"] == 2 * (22 + 31)


def test_shipped_coupling_coordinator_adds_no_parameters():
    b = adapter_budget(NEXT_7B, rank=8)  # the default coordinator: measured weights, nothing trained
    assert b["coordinator"] == "coupling" and b["structlora_coordinator"] == 0
    assert b["structlora_trainable"] == b["structlora_factors"] + b["structlora_gates"] == 4947968 + 110 * 8


def test_next_budget_equals_llava_1_5(budgets):
    """NeXT adds only anyres tiling and image_newline: the adapted linears and the graph are 1.5's."""
    a, b = budgets["llava-hf/llava-1.5-7b-hf"], budgets[NEXT_7B]
    assert a["model_class"] == "LlavaForConditionalGeneration"
    for key in ("targets", "lora_trainable", "structlora_trainable", "graph_edges"):
        assert a[key] == b[key], key
    assert b["base_params"] == a["base_params"] + 4096  # image_newline
    assert NEXT_7B in markdown(list(budgets.values()))


def test_release_names_the_right_public_base():
    """A v1.6 run must not be released as a LLaVA-1.5 adapter: same tower sizes, other model_type."""
    from llava_structlora.release import hub_id_for

    for hub in PUBLISHED:
        assert hub_id_for(published_config(hub).to_dict()) == hub
