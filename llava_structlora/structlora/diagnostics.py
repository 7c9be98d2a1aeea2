"""Factored diagnostics and penalties: drift energy, CosAdj, open directions, gate stats.

Everything is computed from the factors through Grams (paper §3.4, App. C/E.3):
``<B_i D_i A_i, B_j D_j A_j>_F = trace(D_i (B_i^T B_j) D_j (A_j A_i^T))``. Stacking the factors of
a shape group gives all pairwise inner products of the *filtered* updates (an ``N x N`` Gram
``G``) from two ``(N r) x (N r)`` Grams; the *final* updates of eq. (A) have Gram ``C G C^T``.
No ``d_out x d_in`` matrix is ever formed.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .graph import Node


def filtered_gram(layers: list, nodes: list[Node], m: Tensor) -> Tensor:
    """``G[i, j] = <B_i diag(m_i) A_i, B_j diag(m_j) A_j>_F`` (zero across different shapes).

    ``m`` (N x r) holds per-direction coefficients (gates x modulation x scale). Differentiable.
    """
    n, r = m.shape
    m = m if m.dtype == torch.float64 else m.float()   # Grams in >= fp32 even for a bf16 model
    G = m.new_zeros(n, n)
    groups: dict[tuple[int, int], list[int]] = {}
    for nd in nodes:
        groups.setdefault(nd.shape, []).append(nd.index)
    for idx in groups.values():
        A = torch.cat([layers[i].lora_A for i in idx], 0).to(m.dtype)   # (g r, d_in)
        B = torch.cat([layers[i].lora_B for i in idx], 1).to(m.dtype)   # (d_out, g r)
        mf = m[idx].reshape(-1)
        block = (mf[:, None] * (B.T @ B) * mf[None, :]) * (A @ A.T)  # GA symmetric: trace(XY) = sum(X * Y^T)
        sub = block.reshape(len(idx), r, len(idx), r).sum((1, 3))
        ii = torch.tensor(idx, device=m.device)
        G = G.index_put((ii[:, None], ii[None, :]), sub)
    return G


def final_gram(G: Tensor, C: Tensor | None) -> Tensor:
    if C is None:
        return G
    C = C.to(G.dtype)
    return C @ G @ C.T


def energy(gram: Tensor, weights: Tensor) -> Tensor:
    """``sum_{i<j} w_ij ||U_i - U_j||^2 = sum(L_w * G)`` for symmetric ``w`` with zero diagonal."""
    lap = torch.diag(weights.sum(1)) - weights
    return (lap * gram).sum()


def edge_cosines(gram: Tensor, mask: Tensor, eps: float = 1e-12) -> Tensor:
    """Cosines of the flattened updates over the upper-triangular edges of ``mask``."""
    i, j = torch.triu(mask, diagonal=1).nonzero(as_tuple=True)
    d = gram.diagonal()
    return gram[i, j] / (d[i] * d[j]).clamp_min(eps).sqrt()


def adjacent_mask(nodes: list[Node], edges: list[tuple[int, int, str]], device=None) -> Tensor:
    """The depth chain (edge kind ``adjacent``): what the paper's drift energy and CosAdj sum over."""
    mask = torch.zeros(len(nodes), len(nodes), dtype=torch.bool, device=device)
    for i, j, k in edges:
        if k == "adjacent" and nodes[i].shape == nodes[j].shape:
            mask[i, j] = mask[j, i] = True
    return mask


def penalty(kind: str, gram: Tensor, mask: Tensor) -> Tensor:
    """App. C static penalties over same-shape graph edges: ``cosine_penalty`` = mean(1 - cos),
    ``laplacian_penalty`` = mean ||U_i - U_j||^2."""
    i, j = torch.triu(mask, diagonal=1).nonzero(as_tuple=True)
    if i.numel() == 0:
        return gram.new_zeros(())
    if kind == "cosine_penalty":
        return (1.0 - edge_cosines(gram, mask)).mean()
    d = gram.diagonal()
    return (d[i] + d[j] - 2 * gram[i, j]).mean()


@torch.no_grad()
def diagnostics_from_state(state: dict[str, Any], layers: list, nodes: list[Node],
                           edges: list[tuple[int, int, str]], open_threshold: float) -> dict[str, Any]:
    """Build the diagnostics dict from an eval-mode coordinator state (see model.structlora_diagnostics)."""
    m, C, gates = state["m"], state["C"], state["gates"]
    G = filtered_gram(layers, nodes, m)
    Gf = final_gram(G, C)
    adj = adjacent_mask(nodes, edges, m.device)
    w = adj.to(Gf.dtype)
    cos = edge_cosines(Gf, adj)
    eff = gates if state["s"] is None else gates * state["s"]
    open_dirs = {nd.name: int((eff[nd.index].abs() > open_threshold).sum()) for nd in nodes}
    out: dict[str, Any] = {
        "drift_energy": float(energy(Gf, w)),
        "drift_energy_filtered": float(energy(G, w)),
        "cos_adj": float(cos.mean()) if cos.numel() else float("nan"),
        "open_directions": open_dirs,
        "open_fraction": sum(open_dirs.values()) / max(eff.numel(), 1),
        "gate_mean": float(gates.mean()),
        "gate_values": {nd.name: gates[nd.index].tolist() for nd in nodes},
        "update_norms": {nd.name: float(Gf[nd.index, nd.index].clamp_min(0).sqrt()) for nd in nodes},
    }
    if state.get("a") is not None:
        out["drift_energy_weighted"] = float(energy(Gf, state["a"].to(Gf.dtype)))
        out["eta"] = float(state["eta"])
        out["lambda_max"] = float(state["lambda_max"])
    if state["s"] is not None:
        out["modulation_mean"] = float(state["s"].mean())
    return out


@torch.no_grad()
def cosine_matrix(layers: list, nodes: list[Node], m: Tensor, C: Tensor | None) -> Tensor:
    """Full cosine heatmap of the final updates across layers (NaN across different shapes)."""
    Gf = final_gram(filtered_gram(layers, nodes, m), C)
    d = Gf.diagonal().clamp_min(1e-24).sqrt()
    cos = Gf / (d[:, None] * d[None, :])
    same = torch.tensor([[a.shape == b.shape for b in nodes] for a in nodes], device=Gf.device)
    return cos.masked_fill(~same, float("nan"))
