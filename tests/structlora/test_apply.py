"""Acceptance 1, 5, 7: targets, freezing, meta-device 7B shapes, config validation."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import tiny_llava
from transformers import LlavaForConditionalGeneration

from llava_structlora.structlora import StructLoRAConfig, apply_structlora, get_controller
from llava_structlora.structlora.layer import StructLoRALinear
from tests.tiny_configs import llava_7b_config

QV = re.compile(r"^model\.(vision_tower\.encoder|language_model)\.layers\.(\d+)\.self_attn\.(q_proj|v_proj)$")


def test_exactly_qv_of_both_towers_adapted_and_nothing_else_trainable():
    model = apply_structlora(tiny_llava(), StructLoRAConfig(coordinator="gnn"))
    adapted = [n for n, m in model.named_modules() if isinstance(m, StructLoRALinear)]
    # vision_feature_layer=-2: the last of the 4 vision layers is dead, so 3 vision + 4 LM layers x (q, v)
    assert len(adapted) == 2 * (3 + 4) and all(QV.match(n) for n in adapted)
    assert {QV.match(n).group(1) for n in adapted} == {"vision_tower.encoder", "language_model"}
    assert not any(n.startswith("model.vision_tower.encoder.layers.3.") for n in adapted)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    for n in trainable:
        adapter = re.search(r"self_attn\.(q_proj|v_proj)\.(lora_A|lora_B|gate\.log_alpha)$", n)
        assert adapter or n.startswith("structlora.coordinator."), n
    assert any(n.startswith("structlora.coordinator.") for n in trainable)
    assert not any("multi_modal_projector" in n or "base_layer" in n or "lm_head" in n for n in trainable)


def test_dead_layers_skipped_for_every_method_unless_kept():
    from llava_structlora.structlora import resolve_target_modules

    kept = apply_structlora(tiny_llava(), StructLoRAConfig(keep_dead_layers=True))
    assert len(get_controller(kept).layers) == 2 * 2 * 4
    live = resolve_target_modules(tiny_llava(), "qv")
    assert set(live) == {
        l.module_name for l in get_controller(apply_structlora(tiny_llava(), StructLoRAConfig())).layers
    }
    assert len(resolve_target_modules(tiny_llava(), "qv", keep_dead_layers=True)) == 16
    model = tiny_llava()
    model.config.vision_feature_layer = -1  # every vision layer feeds the projector: nothing is dead
    assert len(resolve_target_modules(model, "qv")) == 16
    with pytest.raises(ValueError, match="only dead layers.*keep_dead_layers"):
        resolve_target_modules(tiny_llava(), [r"vision_tower\.encoder\.layers\.3\.self_attn\.q_proj$"])


def test_qkvo_preset_and_regex_targets():
    model = apply_structlora(tiny_llava(), StructLoRAConfig(targets="qkvo"))
    assert len(get_controller(model).layers) == 4 * (3 + 4)
    model = apply_structlora(
        tiny_llava(), StructLoRAConfig(targets=[r"language_model\.layers\.[01]\.self_attn\.q_proj$"])
    )
    assert [l.module_name for l in get_controller(model).layers] == [
        "model.language_model.layers.0.self_attn.q_proj",
        "model.language_model.layers.1.self_attn.q_proj",
    ]


@pytest.mark.parametrize(
    "field,value",
    [
        ("gate", "bernoulli"),
        ("r", 0),
        ("r", -2),
        ("filter", "ib2"),
        ("coordinator", "mlp"),
        ("graph", "full"),
        ("gnn_layers", 4),
        ("gnn_type", "sage"),
        ("dropout", 1.5),
        ("targets", "qz"),
        ("targets", ["("]),
        ("smooth_eta", 1.5),
        ("keep_k", 99),
        ("gate_init", 0.0),
        ("gate_init", 1.5),
        ("gate_noise", "gauss"),
        ("modulation", "on"),
        ("smooth_edges", "all"),
        ("gate_lr_mult", 0.0),
        ("coordinator_lr_mult", -1.0),
        ("ib_warmup_steps", -1.0),
    ],
)
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"StructLoRAConfig\.{field}"):
        StructLoRAConfig(**{field: value})


def test_targets_matching_nothing_is_a_clear_error():
    with pytest.raises(ValueError, match=r"StructLoRAConfig\.targets.*matched no nn\.Linear"):
        apply_structlora(tiny_llava(), StructLoRAConfig(targets=[r"does_not_exist$"]))
    with pytest.raises(ValueError, match="unknown field"):
        StructLoRAConfig.from_dict({"r": 8, "rank": 8})


def _llava_7b_meta() -> LlavaForConditionalGeneration:
    with torch.device("meta"):
        return LlavaForConditionalGeneration(llava_7b_config())


def _trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_llava_1_5_7b_on_meta_device():
    model = apply_structlora(_llava_7b_meta(), StructLoRAConfig(r=8))
    ctrl = get_controller(model)
    # q/v of CLIP layers 0..22 (layer 23 is above vision_feature_layer=-2: dead) + 32 Llama layers
    assert len(ctrl.layers) == 2 * 23 + 2 * 32 == 110
    assert not any(".encoder.layers.23." in l.module_name for l in ctrl.layers)
    assert all(p.device.type == "meta" for p in model.parameters())
    lora = sum(l.lora_A.numel() + l.lora_B.numel() for l in ctrl.layers)
    gates = sum(l.gate.log_alpha.numel() for l in ctrl.layers)
    coord = sum(p.numel() for p in ctrl.parameters())
    plain = apply_structlora(_llava_7b_meta(), StructLoRAConfig(r=8, filter="none", coordinator="none"))
    print(
        f"\n[7B meta] trainable: LoRA r=8 {_trainable(plain):,} | StructLoRA r=8 {_trainable(model):,} "
        f"(factors {lora:,} + gates {gates:,} + coordinator {coord:,}); coordinator/LoRA = {coord / lora:.4%}"
    )
    print(f"[7B meta] graph edges: {ctrl.graph.kinds()}")
    assert _trainable(plain) == lora == 23 * 2 * 8 * 2048 + 32 * 2 * 8 * 8192
    assert _trainable(model) == lora + gates + coord
    assert coord < 0.01 * lora
    assert ctrl.graph.smoothing_mask().sum() > 0 and ctrl.graph.kinds()["bridge"] == 4
