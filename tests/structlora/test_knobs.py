"""Issue-11 knobs: optimizer groups, per-gate IB with warm-up, gate init per family, gate_noise, smooth_edges,
legacy configs and the "what moved" record."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import tiny_batch, tiny_llava, train_steps

from llava_structlora.structlora import (
    StructLoRAConfig,
    apply_structlora,
    get_controller,
    structlora_moved,
    structlora_on_step,
    structlora_param_groups,
    structlora_regularizer,
)
from llava_structlora.structlora.gates import GumbelGate, HardConcreteGate


def test_param_groups_separate_gates_and_coordinator_without_weight_decay():
    cfg = StructLoRAConfig(gate_lr_mult=50.0, coordinator_lr_mult=5.0, coordinator="gnn")
    model = apply_structlora(tiny_llava(), cfg)
    groups = {g["name"]: g for g in structlora_param_groups(model, 1e-3, 0.01)}
    assert set(groups) == {"structlora_factors", "structlora_gates", "structlora_coordinator"}
    assert groups["structlora_factors"]["lr"] == 1e-3 and groups["structlora_factors"]["weight_decay"] == 0.01
    assert groups["structlora_gates"]["lr"] == pytest.approx(5e-2) and groups["structlora_gates"]["weight_decay"] == 0
    assert groups["structlora_coordinator"]["lr"] == pytest.approx(5e-3)
    assert groups["structlora_coordinator"]["weight_decay"] == 0
    ctrl = get_controller(model)
    assert {id(p) for p in groups["structlora_gates"]["params"]} == {id(l.gate.log_alpha) for l in ctrl.layers}
    covered = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(covered) == sorted(id(p) for p in model.parameters() if p.requires_grad)  # each exactly once
    none = apply_structlora(tiny_llava(), StructLoRAConfig(filter="none", coordinator="none"))
    assert [g["name"] for g in structlora_param_groups(none, 1e-3, 0.0)] == ["structlora_factors"]


def test_ib_pressure_per_gate_does_not_depend_on_the_number_of_layers():
    grads = []
    for layers in (2, 4):
        model = apply_structlora(tiny_llava(layers=layers), StructLoRAConfig(coordinator="none"))
        structlora_regularizer(model).backward()
        grads.append(get_controller(model).layers[0].gate.log_alpha.grad.clone())
    assert torch.allclose(grads[0], grads[1]) and float(grads[0].abs().min()) > 0


def test_ib_warmup_steps_and_fraction():
    for warm, max_steps, halfway in ((10, 100, 5), (0.2, 100, 10)):
        model = apply_structlora(tiny_llava(), StructLoRAConfig(coordinator="none", ib_warmup_steps=warm))
        structlora_on_step(model, 0, max_steps)
        assert float(structlora_regularizer(model)) == 0.0
        structlora_on_step(model, halfway, max_steps)
        half = float(structlora_regularizer(model))
        structlora_on_step(model, max_steps, max_steps)
        assert half > 0 and float(structlora_regularizer(model)) == pytest.approx(2 * half)


@pytest.mark.parametrize("gate", ["hard_concrete", "gaussian", "gumbel"])
def test_gate_init_is_the_eval_gate_and_gate_noise_none_is_deterministic(gate):
    model = apply_structlora(tiny_llava(), StructLoRAConfig(gate=gate, gate_noise="none", coordinator="none"))
    ctrl = get_controller(model)
    assert torch.equal(ctrl.gates(False), torch.ones(len(ctrl.layers), 8))
    torch.manual_seed(0)
    a = ctrl.gates(True)
    torch.manual_seed(1)
    assert torch.equal(a, ctrl.gates(True)) and torch.equal(a.detach(), ctrl.gates(False))
    train_steps(model, steps=2)  # still trainable: the gate parameters get gradients and move


def test_layer_scale_is_one_learned_scalar_per_layer_starting_at_lora():
    """filter=layer_scale (the coordinator's scale control): eval gate 1 at init, one parameter per layer,
    trained in the gates' group without weight decay, no regularizer, and it moves."""
    model = apply_structlora(tiny_llava(), StructLoRAConfig(filter="layer_scale", coordinator="none"))
    ctrl = get_controller(model)
    assert torch.equal(ctrl.gates(False), torch.ones(len(ctrl.layers), 8))
    assert torch.equal(ctrl.gates(True), ctrl.gates(False))  # no noise
    groups = {g["name"]: g for g in structlora_param_groups(model, 1e-3, 0.01)}
    assert {id(p) for p in groups["structlora_gates"]["params"]} == {id(l.gate.scale) for l in ctrl.layers}
    assert all(l.gate.scale.numel() == 1 for l in ctrl.layers)
    assert float(structlora_regularizer(model)) == 0.0
    train_steps(model, steps=3)
    scales = torch.cat([l.gate.scale.detach() for l in ctrl.layers])
    assert (scales - 1).abs().max() > 1e-3
    gates = ctrl.gates(False)
    assert torch.equal(gates, scales[:, None].expand_as(gates))  # one value per layer, all directions


def test_gumbel_and_hard_concrete_init_values():
    assert math.isclose(1 / (1 + math.exp(-GumbelGate.init_logit(1.0))), GumbelGate.MAX_OPEN)
    assert GumbelGate.init_logit(0.3) < 0  # eval gate 0 for gate_init <= 0.5 (a threshold gate)
    la = HardConcreteGate.init_log_alpha
    assert la(1.0) > math.log(11) > la(0.99)  # log 11: where the unclamped eval gate reaches 1


def test_smooth_edges_chain_vs_same_shape():
    """Tiny base: every matrix has one shape, so same_shape smooths across q/v and towers; chain never does."""
    chain = get_controller(apply_structlora(tiny_llava(), StructLoRAConfig(graph="hybrid")))
    same = get_controller(apply_structlora(tiny_llava(), StructLoRAConfig(graph="hybrid", smooth_edges="same_shape")))
    for ctrl, mixes in ((chain, False), (same, True)):
        i, j = ctrl.smooth.nonzero(as_tuple=True)
        kinds_differ = any(ctrl.nodes[a].kind != ctrl.nodes[b].kind for a, b in zip(i.tolist(), j.tolist()))
        assert kinds_differ == mixes
    i, j = chain.smooth.nonzero(as_tuple=True)
    assert all(abs(chain.nodes[a].layer - chain.nodes[b].layer) == 1 for a, b in zip(i.tolist(), j.tolist()))


def test_legacy_config_keeps_its_old_operator():
    old = StructLoRAConfig().to_dict()
    for k in (
        "gate_init",
        "gate_noise",
        "gate_lr_mult",
        "coordinator_lr_mult",
        "ib_warmup_steps",
        "modulation",
        "smooth_edges",
        "keep_dead_layers",
    ):
        old.pop(k)
    old["gate_init_open"] = 0.9
    cfg = StructLoRAConfig.from_dict(old)
    assert (cfg.modulation, cfg.smooth_edges, cfg.keep_dead_layers) == ("free", "same_shape", True)


def test_moved_record_is_jsonable_and_measures_movement():
    model = apply_structlora(tiny_llava(0), StructLoRAConfig(coordinator="gnn", modulation="normalized"))
    fresh = structlora_moved(model)
    assert fresh["eval_gate_delta"]["max_abs"] == 0 and fresh["gate_param_delta"]["log_alpha"]["max_abs"] == 0
    assert fresh["eval_gate_hist"]["init"]["counts"][-1] == 14 * 8 and fresh["open_fraction"]["init"] == 1.0
    assert all(v == 0 for v in fresh["update_norms"]["final"].values())
    sm = fresh["smoothing"]  # the init operator is rebuilt exactly: nothing has moved yet
    assert sm["coef_init"] and sm["coef_init"] == pytest.approx(sm["coef_final"]) and sm["median_abs_delta"] < 1e-6
    assert len(set(sm["coef_init"].values())) == 1  # an untrained GNN is the fixed Laplacian: one weight
    train_steps(model, steps=3)
    moved = json.loads(json.dumps(structlora_moved(model)))
    assert moved["gate_param_delta"]["log_alpha"]["median_abs"] > 0.05
    assert moved["modulation_mean"] == pytest.approx(1.0, abs=1e-5)
    assert moved["smoothing"]["median_abs_delta"] > 0  # the coordinator's edge weights moved
    assert set(moved["open_directions"]["final"]) == {l.module_name for l in get_controller(model).layers}
    assert all(v > 0 for v in moved["update_norms"]["final"].values())
    assert (
        sum(moved["eval_gate_hist"]["final"]["counts"])
        + moved["eval_gate_hist"]["final"]["below"]
        + moved["eval_gate_hist"]["final"]["above"]
        == 14 * 8
    )
    model.train()
    _ = model(**tiny_batch(0))


def test_gnn_without_a_learnable_path_is_reported(caplog):
    """The GNN reaches the update through its smoothing weights (free: one edge suffices; normalized to mean 1:
    two edges are needed) or the modulation; without either the controller warns, and the gradient is 0."""
    import logging

    def coordinator_grad(cfg: StructLoRAConfig) -> float:
        ctrl = get_controller(apply_structlora(tiny_llava(), cfg))
        with torch.no_grad():
            for layer in ctrl.layers:
                layer.lora_B.normal_()
        st = ctrl.state(training=True)
        g = torch.Generator().manual_seed(0)  # random weights: normalized s and a have fixed sums
        (st["C"] * torch.randn(st["C"].shape, generator=g)).sum().add(
            (st["m"] * torch.randn(st["m"].shape, generator=g)).sum()
        ).backward()
        return max(float(p.grad.abs().max()) for p in ctrl.coordinator.parameters() if p.grad is not None)

    lm = r".*language_model.*layers\.[01]\.self_attn\."
    one_edge = [lm + "q_proj"]  # one chain of 2 layers: a single smoothing edge
    two_edges = [lm + "q_proj", lm + "v_proj"]  # two chains: the tiny base's LM
    cfg = StructLoRAConfig(coordinator="gnn", targets=one_edge, modulation="off")
    with caplog.at_level(logging.WARNING, logger="llava_structlora.structlora.controller"):
        ctrl = get_controller(apply_structlora(tiny_llava(), cfg))
    assert not ctrl.gnn_is_effective and "cannot change this model's update" in caplog.text
    assert coordinator_grad(cfg) == 0.0
    for ok in (
        StructLoRAConfig(coordinator="gnn", targets=one_edge, edge_weights="free"),
        StructLoRAConfig(coordinator="gnn", targets=two_edges),
        StructLoRAConfig(coordinator="gnn", targets=one_edge, modulation="normalized"),
    ):
        assert get_controller(apply_structlora(tiny_llava(), ok)).gnn_is_effective
        assert coordinator_grad(ok) > 0.0
