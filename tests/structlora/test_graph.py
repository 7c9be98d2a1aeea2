"""Acceptance 8: the joint graph is inspectable and has the right edge kinds; similarity graph is sparse kNN."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_llava, train_steps

from llava_structlora.structlora import StructLoRAConfig, apply_structlora, get_controller
from llava_structlora.structlora.graph import semantic_edges


def _edges(graph: str, **kw):
    ctrl = get_controller(apply_structlora(tiny_llava(), StructLoRAConfig(graph=graph, **kw)))
    return ctrl, ctrl.graph.edge_list()


def _tower(name: str) -> str:
    return "vision" if "vision_tower" in name else "language"


def test_hybrid_graph_edge_kinds():
    ctrl, edges = _edges("hybrid")
    kinds = {k for _, _, k in edges}
    assert kinds == {"adjacent", "qv", "bridge", "semantic"}
    adj = [(a, b) for a, b, k in edges if k == "adjacent"]
    assert any(_tower(a) == _tower(b) == "vision" for a, b in adj)
    assert any(_tower(a) == _tower(b) == "language" for a, b in adj)
    assert not any(_tower(a) != _tower(b) for a, b in adj)
    for a, b, k in edges:
        if k == "qv":  # q <-> v of the same block
            assert a.rsplit(".", 1)[0] == b.rsplit(".", 1)[0] and {a[-6:], b[-6:]} == {"q_proj", "v_proj"}
    bridges = [(a, b) for a, b, k in edges if k == "bridge"]
    assert bridges and all({_tower(a), _tower(b)} == {"vision", "language"} for a, b in bridges)
    # vision_feature_layer=-2: the last CLIP layer (3) does not feed the projector, layer 2 does
    assert any(
        "encoder.layers.2.self_attn.q_proj" in a and "language_model.layers.0.self_attn.q_proj" in b for a, b in bridges
    )
    assert not any("encoder.layers.3." in a for a, b in bridges)


@pytest.mark.parametrize("graph", ["adjacency", "similarity"])
def test_semantic_edges_only_under_similarity_graphs(graph):
    ctrl, edges = _edges(graph, knn_k=2)
    kinds = {k for _, _, k in edges}
    if graph == "adjacency":
        assert "semantic" not in kinds and {"adjacent", "qv", "bridge"} <= kinds
    else:
        n = ctrl.graph.num_nodes
        assert kinds == {"semantic"}
        assert len(edges) <= 2 * n < n * (n - 1) // 2  # sparse: k per node, not all pairs


def test_knn_is_k_per_node_and_deterministic():
    torch.manual_seed(0)
    desc = torch.randn(30, 7)
    edges = semantic_edges(desc, k=3)
    assert edges == semantic_edges(desc.clone(), k=3)
    chosen = torch.zeros(30, 30, dtype=torch.bool)
    for i, j, _ in edges:
        chosen[i, j] = chosen[j, i] = True
    assert len(edges) <= 3 * 30 and chosen.sum(1).min() >= 3
    x = torch.nn.functional.normalize(desc - desc.mean(0), dim=1)
    sim = (x @ x.T).fill_diagonal_(-2)
    for i in range(30):  # every node's own top-3 are among its neighbours
        assert chosen[i, sim[i].topk(3).indices].all()


def test_graph_refresh_uses_parameters_and_keeps_trainable_set():
    model = apply_structlora(tiny_llava(), StructLoRAConfig(graph="similarity", graph_refresh_steps=1))
    ctrl = get_controller(model)
    before = ctrl.graph.edges
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    train_steps(model, steps=3)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == names
    assert ctrl.graph.edges != before  # refreshed from the trained descriptors
    assert all(k == "semantic" for _, _, k in ctrl.graph.edges)
