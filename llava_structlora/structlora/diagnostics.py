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
    m = m if m.dtype == torch.float64 else m.float()  # Grams in >= fp32 even for a bf16 model
    G = m.new_zeros(n, n)
    groups: dict[tuple[int, int], list[int]] = {}
    for nd in nodes:
        groups.setdefault(nd.shape, []).append(nd.index)
    for idx in groups.values():
        A = torch.cat([layers[i].lora_A for i in idx], 0).to(m.dtype)  # (g r, d_in)
        B = torch.cat([layers[i].lora_B for i in idx], 1).to(m.dtype)  # (d_out, g r)
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
def diagnostics_from_state(
    state: dict[str, Any], layers: list, nodes: list[Node], edges: list[tuple[int, int, str]], open_threshold: float
) -> dict[str, Any]:
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


# ----------------------------------------------------------------------------- what moved
def histogram(values: Tensor, bins: int = 10) -> dict[str, Any]:
    """Counts over [0, 1] in ``bins`` equal bins (1.0 falls in the last), plus values below 0 / above 1."""
    v = values.detach().float().flatten().cpu()
    inside = v[(v >= 0) & (v <= 1)]
    counts = torch.histc(inside, bins=bins, min=0.0, max=1.0) if inside.numel() else torch.zeros(bins)
    return {
        "edges": [i / bins for i in range(bins + 1)],
        "counts": [int(c) for c in counts.tolist()],
        "below": int((v < 0).sum()),
        "above": int((v > 1).sum()),
    }


def _abs_stats(delta: Tensor) -> dict[str, float]:
    d = delta.detach().abs().float().flatten().cpu()
    return {"median_abs": float(d.median()), "mean_abs": float(d.mean()), "max_abs": float(d.max())}


@torch.no_grad()
def moved_from_state(
    state: dict[str, Any],
    layers: list,
    nodes: list[Node],
    init_params: list[dict[str, Tensor]],
    gate_cls,
    cfg,
    open_threshold: float,
) -> dict[str, Any]:
    """JSON-able record of how far training moved the adapter from its init (see model.structlora_moved).

    ``init_params``: per layer, the gate tensors a fresh adapter of the same config and seed starts with.
    Gate parameter deltas are in the parameters' own units (logits for hard_concrete/gumbel, mu and
    log_sigma for gaussian).
    """
    gates, s = state["gates"], state["s"]
    names = [nd.name for nd in nodes]
    out: dict[str, Any] = {
        "num_layers": len(nodes),
        "r": int(gates.shape[1]),
        "gate": None if gate_cls is None else gate_cls.__name__,
    }
    if gate_cls is not None and init_params:
        init_stacked = {k: torch.stack([p[k] for p in init_params]).to(gates.device) for k in init_params[0]}
        now = {k: torch.stack([getattr(l.gate, k).detach() for l in layers]) for k in init_stacked}
        g0 = gate_cls.evaluate(init_stacked, cfg).to(gates.dtype)
        out["gate_param_delta"] = {k: _abs_stats(now[k].float() - init_stacked[k].float()) for k in now}
    else:
        g0 = torch.ones_like(gates)
    out["eval_gate_delta"] = _abs_stats(gates - g0)
    out["eval_gate_hist"] = {"init": histogram(g0), "final": histogram(gates)}
    eff = gates if s is None else gates * s
    out["open_directions"] = {
        "init": {n: int((g0[i].abs() > open_threshold).sum()) for i, n in enumerate(names)},
        "final": {n: int((eff[i].abs() > open_threshold).sum()) for i, n in enumerate(names)},
    }
    out["open_fraction"] = {k: sum(v.values()) / max(gates.numel(), 1) for k, v in out["open_directions"].items()}
    out["modulation_mean"] = None if s is None else float(s.mean())
    out["modulation_mean_per_layer"] = None if s is None else {n: float(s[i].mean()) for i, n in enumerate(names)}
    G = filtered_gram(layers, nodes, state["m"])
    Gf = final_gram(G, state["C"])
    Gl = filtered_gram(layers, nodes, torch.full_like(state["m"], layers[0].scale))
    norm = lambda g: {n: float(g[i, i].clamp_min(0).sqrt()) for i, n in enumerate(names)}  # noqa: E731
    out["update_norms"] = {"final": norm(Gf), "own_gated": norm(G), "lora_ungated": norm(Gl)}
    return out
