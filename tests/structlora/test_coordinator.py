"""Acceptance 4 (drift energy never increases under the clamped step) and 9 (the coordinator trains)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import tiny_batch, tiny_llava
from hypothesis import given, settings
from hypothesis import strategies as st

from llava_structlora.structlora import StructLoRAConfig, apply_structlora, get_controller, structlora_regularizer
from llava_structlora.structlora.coordinator import DescriptorGNN, lambda_max, smoothing_operator, weighted_laplacian
from llava_structlora.structlora.diagnostics import energy, filtered_gram
from llava_structlora.structlora.graph import Node


def _random_problem(seed: int, n: int, r: int, density: float, two_shapes: bool):
    g = torch.Generator().manual_seed(seed)
    shapes = [(6, 5) if (two_shapes and i % 3 == 0) else (4, 7) for i in range(n)]
    nodes = [Node(i, f"n{i}", "language", "q_proj", i, i / max(n - 1, 1), s) for i, s in enumerate(shapes)]
    layers = [
        SimpleNamespace(
            lora_A=torch.randn(r, s[1], generator=g, dtype=torch.float64),
            lora_B=torch.randn(s[0], r, generator=g, dtype=torch.float64),
        )
        for s in shapes
    ]
    same = torch.tensor([[a == b for b in shapes] for a in shapes])
    mask = (torch.rand(n, n, generator=g) < density).triu(1)
    mask = (mask | mask.T) & same
    m = torch.rand(n, r, generator=g, dtype=torch.float64) * 2
    return nodes, layers, mask, m, g


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 9),
    r=st.integers(1, 4),
    density=st.floats(0.1, 1.0),
    eta0=st.floats(0.05, 1.0),
    two_shapes=st.booleans(),
    learned=st.booleans(),
)
def test_one_step_never_increases_drift_energy(seed, n, r, density, eta0, two_shapes, learned):
    nodes, layers, mask, m, g = _random_problem(seed, n, r, density, two_shapes)
    if learned:  # weights from a descriptor GNN with a random (trained-looking) logit head
        cfg = StructLoRAConfig(r=r, gnn_hidden=8)
        torch.manual_seed(seed)
        gnn = DescriptorGNN(cfg, 5).double()
        with torch.no_grad():
            gnn.edge_src.normal_(0, 3.0)
            gnn.edge_dst.normal_(0, 3.0)
        a, _ = gnn(torch.randn(n, 5, generator=g, dtype=torch.float64), mask, mask)
    else:
        a = torch.rand(n, n, generator=g, dtype=torch.float64).triu(1)
        a = (a + a.T) * 3 * mask
    a = a.detach()
    # the GNN's strength is fixed by the unweighted mask (clamped at eta * lambda_max = 1); other weights by themselves
    C, eta, lam = smoothing_operator(a, eta0, bound=mask if learned else None)
    assert torch.isclose(lam, torch.linalg.eigvalsh(weighted_laplacian(a))[-1])
    assert float(eta * lam) <= (1.0 if learned else eta0) + 1e-9
    if learned:
        assert bool((a[mask] > 0).all()) and not a[~mask].any()  # default edge_weights=normalized: mean 1
        assert not mask.any() or math.isclose(float(a[mask].mean()), 1.0, rel_tol=1e-9)
    G = filtered_gram(layers, nodes, m)
    before, after = energy(G, a), energy(C @ G @ C.T, a)
    assert after <= before * (1 + 1e-9) + 1e-9
    # the factored Gram equals the materialized one
    dense = [(l.lora_B * m[i]) @ l.lora_A for i, l in enumerate(layers)]
    i, j = 0, n - 1
    if nodes[i].shape == nodes[j].shape:
        assert torch.isclose(G[i, j], (dense[i] * dense[j]).sum())


def test_lambda_max_is_computed_and_the_clamp_matters():
    n = 6
    path = torch.diag(torch.ones(n - 1, dtype=torch.float64), 1)
    path = path + path.T
    lam = lambda_max(weighted_laplacian(path))
    assert math.isclose(float(lam), 2 + 2 * math.cos(math.pi / n), rel_tol=1e-9)  # not the bound 2 * max deg
    C, eta, _ = smoothing_operator(path, 1.0)
    assert math.isclose(float(eta), 1 / float(lam), rel_tol=1e-12)
    u = torch.tensor([(-1.0) ** k for k in range(n)], dtype=torch.float64)[:, None]
    G = u @ u.T  # highest-frequency signal on the path
    lap = weighted_laplacian(path)
    too_big = torch.eye(n, dtype=torch.float64) - (2.5 / lam) * lap
    assert energy(C @ G @ C.T, path) < energy(G, path) < energy(too_big @ G @ too_big.T, path)


@pytest.mark.parametrize("modulation", ["off", "normalized", "free"])
def test_coordinator_really_trains(modulation):
    model = apply_structlora(tiny_llava(), StructLoRAConfig(coordinator="gnn", modulation=modulation))
    ctrl = get_controller(model)
    coord = dict(ctrl.coordinator.named_parameters())
    assert coord
    init = {k: v.detach().clone() for k, v in coord.items()}
    with torch.no_grad():
        s0 = ctrl.state(False)
    got_grad = {k: False for k in coord}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    model.train()
    for step in range(4):
        loss = model(**tiny_batch(step)).loss + structlora_regularizer(model)
        loss.backward()
        for k, p in coord.items():
            got_grad[k] |= p.grad is not None and bool(p.grad.abs().sum() > 0)
        opt.step()
        opt.zero_grad()
    assert all(got_grad.values()), [k for k, v in got_grad.items() if not v]
    assert all(not torch.equal(init[k], p) for k, p in coord.items())
    with torch.no_grad():
        s1 = ctrl.state(False)
    assert (s1["a"] - s0["a"]).abs().max() > 1e-4
    if modulation == "off":
        assert s1["s"] is None and not any(k.startswith("gnn.mod.") for k in coord)
    else:
        assert (s1["s"] - s0["s"]).abs().max() > 1e-4
    if modulation == "normalized":  # mean gain 1 per layer: it can only shift weight between directions
        assert torch.allclose(s1["s"].mean(-1), torch.ones(s1["s"].shape[0]), atol=1e-5)
    assert float(s1["eta"] * s1["lambda_max"]) <= 1.0 + 1e-6


def test_static_coordinators_have_no_parameters():
    for coordinator in ("none", "laplacian", "cosine_penalty", "laplacian_penalty"):
        ctrl = get_controller(apply_structlora(tiny_llava(), StructLoRAConfig(coordinator=coordinator)))
        assert list(ctrl.parameters()) == [], coordinator


def test_penalty_coordinators_add_a_differentiable_penalty():
    for kind in ("cosine_penalty", "laplacian_penalty"):
        model = apply_structlora(tiny_llava(), StructLoRAConfig(coordinator=kind, filter="none", lambda_penalty=1.0))
        ctrl = get_controller(model)
        with torch.no_grad():
            for l in ctrl.layers:
                l.lora_B.normal_()
        reg = structlora_regularizer(model)
        reg.backward()
        assert reg > 0 and ctrl.layers[0].lora_B.grad.abs().sum() > 0
    model = apply_structlora(tiny_llava(), StructLoRAConfig(filter="none", coordinator="gnn"))
    assert float(structlora_regularizer(model)) == 0.0


def test_untrained_gnn_is_the_fixed_laplacian_and_can_move_each_edge_either_way():
    """a = 2 sigmoid(e) with a zero logit head: at init the GNN coordinator's operator equals coordinator=laplacian
    exactly; with edge_weights=free a logit moves an edge between no smoothing (a -> 0) and twice the fixed
    strength, clamped at eta * lambda_max = 1; normalized maps the same logits to weights of mean 1. With free weights
    a single edge (a 2-layer chain) is learnable."""
    mask = torch.tensor([[False, True, False], [True, False, True], [False, True, False]])
    gnn = DescriptorGNN(StructLoRAConfig(r=2, gnn_hidden=8, edge_weights="free"), 5).double()
    desc = torch.randn(3, 5, dtype=torch.float64)
    a, _ = gnn(desc, mask, mask)
    assert torch.equal(a, mask.double())
    C0, eta0, _ = smoothing_operator(a, 0.5, bound=mask)
    C_fixed, _, _ = smoothing_operator(mask.double(), 0.5, bound=mask)
    assert torch.equal(C0, C_fixed) and math.isclose(float(eta0), 0.5 / 3.0, rel_tol=1e-12)  # lambda_max(path3)=3
    with torch.no_grad():
        gnn.edge_src.normal_(0, 5.0)
    a, _ = gnn(desc, mask, mask)
    assert float(a[mask].min()) < 0.5 or float(a[mask].max()) > 1.5  # the edges moved away from 1
    C, eta, lam = smoothing_operator(a, 0.5, bound=mask)
    assert float(eta * lam) <= 1.0 + 1e-12 and not torch.equal(C, C0)
    gnn.edge_weights = "normalized"  # the same logits, mean 1 over the edges: where to smooth, not how much
    an, _ = gnn(desc, mask, mask)
    assert math.isclose(float(an[mask].mean()), 1.0, rel_tol=1e-12) and bool((an[mask] > 0).all())
    assert torch.equal(torch.argsort(an[mask]), torch.argsort(a[mask]))  # same logits, same order of the edges
    with torch.no_grad():  # saturated logits: a sigmoid / its mean underflows to 0, the softmax keeps mean 1
        gnn.edge_src.fill_(-1e4)
    an, _ = gnn(desc, mask, mask)
    assert math.isclose(float(an[mask].mean()), 1.0, rel_tol=1e-9)
    two = torch.tensor([[False, True], [True, False]])
    x = torch.randn(2, 5, dtype=torch.float64)
    gnn2 = DescriptorGNN(StructLoRAConfig(r=2, gnn_hidden=8, edge_weights="free"), 5).double()
    a2, _ = gnn2(x, two, two)
    smoothing_operator(a2, 0.5, bound=two)[0][0, 1].backward()
    assert float(gnn2.edge_src.grad.abs().max()) > 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 9), eta0=st.floats(0.05, 1.0))
def test_signed_normalized_step_never_increases_signed_drift_energy(seed, n, eta0):
    """coordinator=coupling: a signed coupling in [-1, 1] and the self-loop-normalised Laplacian. Theorem 1 with
    the signed drift energy x^T L x (a_lj < 0 penalises ||x_l + x_j||^2): one clamped step never increases it."""
    from llava_structlora.structlora.coordinator import normalized_laplacian

    nodes, layers, mask, m, g = _random_problem(seed, n, 3, 0.6, two_shapes=False)
    a = ((torch.rand(n, n, generator=g, dtype=torch.float64) * 2 - 1).triu(1) * mask).clone()
    a = a + a.T
    lap = normalized_laplacian(a)
    assert float(torch.linalg.eigvalsh(lap)[0]) > -1e-12 and float(torch.linalg.eigvalsh(lap)[-1]) < 2.0
    C, eta, lam = smoothing_operator(a, eta0, normalized=True)
    assert float(eta * lam) <= 1.0 + 1e-12
    G = filtered_gram(layers, nodes, m)
    before, after = float((lap * G).sum()), float((lap * (C @ G @ C.T)).sum())
    assert after <= before + 1e-9 * max(1.0, abs(before))


def test_full_coupling_averages_a_pair_and_anti_coupling_averages_its_sign_flip():
    from llava_structlora.structlora.coordinator import smoothing_operator as op

    for sign in (1.0, -1.0):
        a = torch.tensor([[0.0, sign], [sign, 0.0]], dtype=torch.float64)
        C, eta, _ = op(a, 1.0, normalized=True)
        assert float(eta) == pytest.approx(1.0)
        assert torch.allclose(C, 0.5 * torch.tensor([[1.0, sign], [sign, 1.0]], dtype=torch.float64))
    C, _, _ = op(torch.zeros(2, 2, dtype=torch.float64), 1.0, normalized=True)  # no coupling measured: identity
    assert torch.equal(C, torch.eye(2, dtype=torch.float64))


def test_measured_coupling_is_the_cosine_of_adjacent_filtered_updates():
    """update_coupling from r x r Grams equals the cosine of the dense updates B diag(g) A on smoothing edges."""
    model = apply_structlora(tiny_llava(), StructLoRAConfig(r=4, coordinator="coupling", filter="ib", seed=3))
    ctrl = get_controller(model)
    assert not list(ctrl.coordinator.parameters())  # no learned parts
    assert torch.count_nonzero(ctrl.coupling()) == 0  # B = 0 at init: nothing measured, no smoothing
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in ctrl.layers:
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g))
    ctrl.drop_caches()
    cos, gates = ctrl.coupling(), ctrl.gates(False)
    edges = ctrl.smooth.triu(1).nonzero().tolist()
    assert edges
    for i, j in edges:
        wi = ctrl.layers[i].lora_B @ torch.diag(gates[i]) @ ctrl.layers[i].lora_A
        wj = ctrl.layers[j].lora_B @ torch.diag(gates[j]) @ ctrl.layers[j].lora_A
        ref = torch.nn.functional.cosine_similarity(wi.flatten(), wj.flatten(), dim=0)
        assert float(cos[i, j]) == pytest.approx(float(ref), abs=1e-5)
    assert torch.count_nonzero(cos[~ctrl.smooth]) == 0
    state = ctrl.state(False)
    assert torch.allclose(state["a"], cos)
