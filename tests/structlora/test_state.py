"""save/load round trip, state dict, diagnostics (factored == materialized), gates, schedule."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_batch, tiny_llava, train_steps

from llava_structlora.structlora import (
    StructLoRAConfig,
    apply_structlora,
    get_controller,
    load_structlora,
    save_structlora,
    structlora_diagnostics,
    structlora_on_step,
    structlora_state_dict,
)
from llava_structlora.structlora.gates import HardConcreteGate
from llava_structlora.structlora.model import eval_plans


def _logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def test_save_load_roundtrip(tmp_path):
    cfg = StructLoRAConfig(gate="gumbel", graph="similarity", graph_refresh_steps=1)
    model = apply_structlora(tiny_llava(0), cfg)
    train_steps(model, steps=3)
    batch = tiny_batch(5)
    ref = _logits(model, batch)
    save_structlora(model, tmp_path / "s")
    loaded = load_structlora(tiny_llava(0), tmp_path / "s").eval()
    assert torch.equal(_logits(loaded, batch), ref)
    assert get_controller(loaded).graph.edges == get_controller(model).graph.edges
    assert float(get_controller(loaded).tau) == pytest.approx(float(get_controller(model).tau))
    sd = structlora_state_dict(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(sd) == trainable


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="structlora_config.json"):
        load_structlora(tiny_llava(0), tmp_path)
    model = apply_structlora(tiny_llava(0), StructLoRAConfig())
    save_structlora(model, tmp_path / "s")
    other = apply_structlora(tiny_llava(0), StructLoRAConfig(targets="qkv"))
    with pytest.raises(ValueError, match="adapted modules differ"):
        load_structlora(other, tmp_path / "s")
    (tmp_path / "s" / "keep.txt").write_text("trainer state")  # saving again keeps foreign files
    save_structlora(model, tmp_path / "s")
    assert (tmp_path / "s" / "keep.txt").exists()
    w = tmp_path / "s" / "structlora_model.safetensors"
    w.write_bytes(w.read_bytes()[:-1] + b" ")
    with pytest.raises(ValueError, match="sha256"):
        load_structlora(tiny_llava(0), tmp_path / "s")


@pytest.mark.parametrize("coordinator", ["gnn", "none"])
def test_diagnostics_match_materialized_updates(coordinator):
    model = apply_structlora(tiny_llava(0), StructLoRAConfig(coordinator=coordinator))
    train_steps(model, steps=2)
    diag = structlora_diagnostics(model, with_cosine_matrix=True)
    ctrl, _, plans = eval_plans(model)
    dense = [l.delta_weight(plans[i]).flatten().double() for i, l in enumerate(ctrl.layers)]
    pairs = [(i, j) for i, j, k in ctrl.graph.edges if k == "adjacent"]
    energy = sum(float(((dense[i] - dense[j]) ** 2).sum()) for i, j in pairs)
    cos = [float(torch.nn.functional.cosine_similarity(dense[i], dense[j], dim=0)) for i, j in pairs]
    assert math.isclose(diag["drift_energy"], energy, rel_tol=1e-4)
    assert math.isclose(diag["cos_adj"], sum(cos) / len(cos), rel_tol=1e-4, abs_tol=1e-6)
    assert set(diag["open_directions"]) == {l.module_name for l in ctrl.layers}
    assert all(0 <= v <= 8 for v in diag["open_directions"].values())
    assert len(diag["cosine_matrix"]) == 14
    if coordinator == "gnn":
        assert 0.0 < diag["eta"] * diag["lambda_max"] <= 1.0 + 1e-6  # eta_0 = 0.5 at init, clamped at 1


def test_gates_init_open_and_eval_deterministic():
    """gate_init=1: eval gate exactly 1 (unclamped 1.05, inside the clamp); training samples stay mostly open."""
    cfg = StructLoRAConfig()
    gate = HardConcreteGate(8, cfg)
    p = gate.stacked_inputs()
    unclamped = torch.sigmoid(gate.log_alpha) * 1.2 - 0.1
    assert torch.allclose(unclamped, torch.full((8,), 1.05)) and float(gate.log_alpha[0]) > math.log(11)
    assert torch.equal(HardConcreteGate.evaluate(p, cfg), torch.ones(8))
    torch.manual_seed(0)
    samples = torch.stack([HardConcreteGate.sample(p, cfg, None) for _ in range(4000)])
    assert float((samples == 1).float().mean()) == pytest.approx(0.82, abs=0.02)  # P(u >= 0.177)
    assert float(samples.mean()) > 0.93
    assert torch.equal(HardConcreteGate.evaluate(p, cfg), HardConcreteGate.evaluate(p, cfg))
    shift = cfg.hard_concrete_temperature * math.log(0.1 / 1.1)
    assert float(HardConcreteGate.kl(p, cfg)) == pytest.approx(float(torch.sigmoid(gate.log_alpha - shift).sum()))
    half = HardConcreteGate(8, StructLoRAConfig(gate_init=0.5))  # below 1 the init is the eval gate itself
    assert torch.allclose(HardConcreteGate.evaluate(half.stacked_inputs(), cfg), torch.full((8,), 0.5))


def test_gumbel_annealing_and_topk_refresh():
    model = apply_structlora(tiny_llava(0), StructLoRAConfig(gate="gumbel"))
    ctrl = get_controller(model)
    structlora_on_step(model, 0, 10)
    assert float(ctrl.tau) == pytest.approx(1.0)
    structlora_on_step(model, 10, 10)
    assert float(ctrl.tau) == pytest.approx(0.1)
    model = apply_structlora(tiny_llava(0), StructLoRAConfig(filter="topk_norm", keep_k=2, topk_refresh_steps=1))
    ctrl = get_controller(model)
    assert all(bool((l.gate.mask == 1).all()) for l in ctrl.layers)  # all open until the first refresh
    train_steps(model, steps=2)
    structlora_on_step(model, 2, 2)
    for l in ctrl.layers:
        norms = l.lora_B.norm(dim=0) * l.lora_A.norm(dim=1)
        assert set(norms.topk(2).indices.tolist()) == set(l.gate.mask.nonzero().flatten().tolist())


def test_activation_checkpointing_recomputes_the_same_plan():
    """Non-reentrant checkpointing (transformers v5 default) gives the same gradients; reentrant is refused."""
    grads = []
    for ckpt in (False, True):
        model = apply_structlora(tiny_llava(0), StructLoRAConfig())
        if ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        torch.manual_seed(0)
        model(**tiny_batch(1)).loss.backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))
    model = apply_structlora(tiny_llava(0), StructLoRAConfig())
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    with pytest.raises(ValueError, match="non-reentrant"):
        model.train()(**tiny_batch(1))


def test_bf16_model_trains_exports_and_merges(tmp_path):
    """A bf16 model (DeepSpeed bf16 casts adapter + coordinator too) runs every path."""
    from llava_structlora.structlora import export_peft_adapter, merge_structlora

    model = apply_structlora(tiny_llava(0), StructLoRAConfig()).to(torch.bfloat16)
    train_steps(model, steps=2)
    diag = structlora_diagnostics(model)
    assert math.isfinite(diag["drift_energy"]) and diag["drift_energy"] > 0
    export_peft_adapter(model, tmp_path / "a")
    batch = tiny_batch(2)
    batch["pixel_values"] = batch["pixel_values"].bfloat16()
    ref = _logits(model, batch).float()
    merged = _logits(merge_structlora(model), batch).float()
    assert (merged - ref).abs().max() < 2e-2  # bf16 rounding of the merged weights only


def test_eval_state_never_uses_stale_descriptors():
    """Export, merge and the first eval forward after training recompute the GNN's descriptors: an update that
    does not bump the version counters (e.g. a fused optimizer, or .data) must still reach the coordinator."""
    from llava_structlora.structlora.model import eval_plans

    model = apply_structlora(tiny_llava(0), StructLoRAConfig(coordinator="gnn"))
    ctrl = get_controller(model)
    with torch.no_grad():
        ctrl.coordinator.gnn.edge_src.normal_(0, 3.0)  # a trained-looking logit head: C depends on descriptors
        for layer in ctrl.layers:
            layer.lora_B.normal_()
    c0 = eval_plans(model)[1]["C"].detach().clone()
    for layer in ctrl.layers[::2]:
        layer.lora_B.data.mul_(5.0)  # no version bump
    c1 = eval_plans(model)[1]["C"].detach()
    assert not torch.allclose(c0, c1)
    model.eval()
    with torch.no_grad():
        model(**tiny_batch(0))  # fills the eval cache
        for layer in ctrl.layers[::2]:
            layer.lora_B.data.mul_(0.2)
        ctrl._eval_cache = None  # what a training forward does
        model(**tiny_batch(0))
    from llava_structlora.structlora.coordinator import node_descriptors

    fresh = node_descriptors(ctrl.layers, ctrl.nodes, ctrl.kinds, ctrl.gates(False), ctrl.cfg.scale)
    assert torch.allclose(ctrl._desc_cache[1], fresh)  # the eval forward's descriptors are the restored model's
    assert torch.allclose(eval_plans(model)[1]["C"], c0)
