"""Acceptance 2 + 3: adapted == merged == stock-PEFT-loaded export (eval mode); none/none == PEFT LoRA."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_batch, tiny_llava, train_steps
from peft import LoraConfig, PeftModel, get_peft_model

from llava_structlora.structlora import (
    StructLoRAConfig,
    apply_structlora,
    export_peft_adapter,
    get_controller,
    merge_structlora,
    resolve_target_modules,
)
from llava_structlora.structlora.layer import StructLoRALinear

VARIANTS = (
    [dict(filter="ib", gate=g, coordinator="gnn") for g in ("hard_concrete", "gaussian", "gumbel")]
    + [
        dict(filter="ib", gate="hard_concrete", coordinator=c)
        for c in ("laplacian", "cosine_penalty", "laplacian_penalty", "none")
    ]
    + [
        dict(filter="ib", gate="gumbel", coordinator="gnn", gnn_type="gcn", gnn_layers=2, graph="similarity"),
        dict(filter="topk_norm", coordinator="gnn", graph="adjacency", keep_k=3),
        dict(filter="random", coordinator="laplacian"),
        dict(filter="none", coordinator="gnn"),
        dict(filter="layer_scale", coordinator="none"),
        dict(filter="ib", gate="hard_concrete", coordinator="gnn", modulation="free", smooth_edges="same_shape"),
        dict(filter="ib", gate="gaussian", coordinator="gnn", modulation="normalized", gate_noise="none"),
        dict(filter="ib", gate="gumbel", coordinator="laplacian", gate_noise="none", keep_dead_layers=True),
    ]
)


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: "-".join(str(v) for v in kw.values()))
def test_adapted_equals_merged_equals_peft_export(kw, tmp_path):
    cfg = StructLoRAConfig(graph_refresh_steps=2, topk_refresh_steps=2, **kw)
    model = apply_structlora(tiny_llava(0), cfg)
    ctrl = get_controller(model)
    train_steps(model, steps=3)
    with torch.no_grad():
        state = ctrl.state(training=False)
    if cfg.coordinator == "gnn":  # modulation and smoothing weights moved away from their init
        assert (state["s"] is None) == (cfg.modulation == "off")
        assert state["s"] is None or (state["s"] - 1).abs().max() > 1e-4
        assert float(state["eta"]) > 0 and (state["a"] > 0).any()
    if cfg.filter in ("ib", "layer_scale"):
        fresh = get_controller(apply_structlora(tiny_llava(0), StructLoRAConfig(**kw))).layers
        for name in type(ctrl.layers[0].gate).param_names:  # gate parameters were trained
            moved = [getattr(a.gate, name) - getattr(b.gate, name) for a, b in zip(ctrl.layers, fresh)]
            assert max(float(d.abs().max()) for d in moved) > 1e-3
    batch = tiny_batch(seed=7)
    adapted = _logits(model, batch)
    assert not torch.allclose(adapted, _logits(tiny_llava(0), batch), atol=1e-3)  # the update is non-trivial
    export_peft_adapter(model, tmp_path / "adapter")
    peft_model = PeftModel.from_pretrained(tiny_llava(0), str(tmp_path / "adapter")).eval()
    merged = merge_structlora(model)
    assert not any(isinstance(m, StructLoRALinear) for m in merged.modules())
    assert not hasattr(merged, "structlora") and not merged._forward_pre_hooks
    assert (_logits(merged, batch) - adapted).abs().max() <= 1e-4
    assert (_logits(peft_model, batch) - adapted).abs().max() <= 1e-4


def test_plain_lora_is_exactly_peft_lora():
    """filter=none, coordinator=none: same init scheme as PEFT, and identical outputs for the same factors."""
    cfg = StructLoRAConfig(filter="none", coordinator="none", r=4, alpha=8)
    model = apply_structlora(tiny_llava(0), cfg)
    assert sum(p.numel() for p in get_controller(model).parameters()) == 0
    targets = resolve_target_modules(tiny_llava(0), "qv")  # what train/methods.py gives PEFT: live q/v only
    peft = get_peft_model(tiny_llava(0), LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    ours = {l.module_name: l for l in get_controller(model).layers}
    assert len(ours) == 14 and set(ours) == set(targets)
    for name, mod in peft.base_model.model.named_modules():
        if name in ours:
            a = mod.lora_A["default"].weight
            bound = (6 / ((1 + 5) * a.shape[1])) ** 0.5  # kaiming_uniform(a=sqrt(5)) bound
            assert ours[name].lora_A.abs().max() <= bound and a.abs().max() <= bound
            assert torch.count_nonzero(ours[name].lora_B) == 0
            with torch.no_grad():
                ours[name].lora_B.normal_()
                mod.lora_A["default"].weight.copy_(ours[name].lora_A)
                mod.lora_B["default"].weight.copy_(ours[name].lora_B)
    batch = tiny_batch(3)
    model.train(), peft.train()  # train mode too: no gates, no sampling
    for mode in ("train", "eval"):
        getattr(model, mode)(), getattr(peft, mode)()
        assert torch.equal(_logits(model, batch), _logits(peft, batch))


@pytest.mark.parametrize("gate", ["hard_concrete", "gaussian", "gumbel"])
@pytest.mark.parametrize("r,alpha", [(8, 16.0), (4, 6.0)])
def test_untrained_structlora_merges_to_exactly_lora(gate, r, alpha):
    """Acceptance: gate_init=1 -> eval gate 1, so with coordinator=none the merged update of an
    untrained adapter is (alpha / r) B A for ANY factors, in every gate family."""
    cfg = StructLoRAConfig(gate=gate, coordinator="none", r=r, alpha=alpha)
    model = apply_structlora(tiny_llava(0), cfg)
    ctrl = get_controller(model)
    assert torch.equal(ctrl.gates(False), torch.ones(len(ctrl.layers), r))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in ctrl.layers:
            layer.lora_A.copy_(torch.randn(layer.lora_A.shape, generator=g))
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g))
    expected = {
        l.module_name: l.base_layer.weight.detach().clone() + (alpha / r) * (l.lora_B @ l.lora_A).detach()
        for l in ctrl.layers
    }
    merged = merge_structlora(model)
    for name, w in expected.items():
        got = merged.get_submodule(name).weight
        if alpha / r == 2.0:  # a power of two: scaling before or after the matmul is bitwise the same
            assert torch.equal(got, w), name
        else:
            assert torch.allclose(got, w, rtol=1e-6, atol=1e-6), name  # only the rounding of the scale
