"""Stage 2 of StructLoRA: the graph coordinator (paper eq. 4-7, App. C and E.3-E.4).

The paper's node feature is the flattened update ``vec(dW~_l)``, millions of numbers per node.
Following docs/design.md §1 we keep message passing on *updates* exact but factored:

    dW = (I - eta * L_a) dW~      i.e.  dW_l = dW~_l + eta * sum_j a_lj (dW~_j - dW~_l)     (A)

a single residual Laplacian-smoothing step (paper eq. 7). The edge weights ``a_lj`` (and an optional
per-direction gate modulation ``s_l``) come from a small residual GNN (GAT or GCN, 1-3 layers) over
shape-free node *descriptors* of the joint vision <-> language graph. ``a_lj`` is a function of a symmetric
GAT-style logit ``e_lj``, one per smoothing edge, whose head is zero-initialised: at init
``a = M`` (the unweighted smoothing graph), so an untrained GNN coordinator *is* the fixed Laplacian
smoother (``coordinator=laplacian``). ``edge_weights=normalized`` (default) is ``n_edges`` times a softmax of
the logits over the smoothing edges (mean 1), so the GNN decides mainly *where* to smooth and ``smooth_eta``
*how much*; ``free`` (``a = 2 sigmoid(e)``) lets it also set how much, from no smoothing (0) to twice the
fixed strength (2). Trained on the task loss alone, ``free`` weights switch the smoothing off (a regulariser
trained on the training loss undoes itself; the planted coordinator problem shows it). A softmax over each
layer's neighbours (plain GAT) would be constantly 1 for a layer with one neighbour (the tiny base's 2-layer
chains) and give the GNN no gradient.

``eta = min(eta_0 / lambda_max(L_M), 1 / lambda_max(L_a))``: the fixed Laplacian's strength, clamped so that
``eta * lambda_max(L_a) <= 1`` always and Theorem 1 (drift energy never increases) holds. The clamp binds
only when the weights concentrate on few edges; it then lowers the overall strength (normalized weights
can reduce the smoothing that way, and on the planted problem did).

Ablations: ``laplacian`` (a_lj = 1, no learned parts), ``cosine_penalty`` / ``laplacian_penalty``
(App. C: no smoothing, a loss on adjacent updates), ``none``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import StructLoRAConfig
from .graph import Node

_NEG = -1e9
# Bumped whenever what coordinator=gnn computes changes, so cached study runs of the old operator are never
# reused (experiments/suite.py keys on it).
GNN_REVISION = 4  # 1: softmax over neighbours, eta / lambda_max(L_a); 4: logit head at 0 = the fixed Laplacian
# The same for coordinator=coupling (the measured signed coupling, self-loop-normalised); revision 1 runs are keyed
# without it, so a change must bump it (experiments/suite.py adds it to the key from revision 2 on).
COUPLING_REVISION = 1


# ----------------------------------------------------------------------------- descriptors
def descriptor_dim(r: int, n_kinds: int) -> int:
    return 3 * r + 1 + n_kinds


def structural_descriptors(nodes: list[Node], r: int, kinds: list[str]) -> Tensor:
    """Descriptors of a freshly initialized adapter (B = 0: no norms, no singular values, gates equal)."""
    gates = torch.ones(len(nodes), r)
    zeros = torch.zeros(len(nodes), 2 * r)
    return torch.cat([gates, zeros, _static_features(nodes, kinds)], 1)


def _static_features(nodes: list[Node], kinds: list[str]) -> Tensor:
    depth = torch.tensor([[n.depth] for n in nodes])
    onehot = torch.zeros(len(nodes), len(kinds))
    for n in nodes:
        onehot[n.index, kinds.index(n.kind)] = 1.0
    return torch.cat([depth, onehot], 1)


@torch.no_grad()
def node_descriptors(layers: list, nodes: list[Node], kinds: list[str], gates: Tensor, scale: float) -> Tensor:
    """Shape-free summary of every filtered update, from ``r x r`` Grams only (detached features).

    Sorted gates, sorted per-direction norms ``||B[:,k]|| ||A[k,:]||`` and sorted singular values of
    ``B diag(g) A`` (eigenvalues of ``GA^1/2 diag(g) GB diag(g) GA^1/2``), depth and node type.
    """
    n, r = gates.shape
    dev = gates.device
    norms = torch.zeros(n, r, device=dev)
    svals = torch.zeros(n, r, device=dev)
    for idx in _shape_groups(nodes).values():
        with torch.autocast(dev.type, enabled=False):  # fp32 Grams also under --bf16 autocast
            _group_spectra(layers, idx, gates, norms, svals)
    sort = lambda t: torch.sort(t, dim=1, descending=True).values  # noqa: E731
    feats = [sort(gates.float()), torch.log1p(sort(norms) * scale), torch.log1p(sort(svals) * scale)]
    return torch.cat(feats + [_static_features(nodes, kinds).to(dev)], 1)


def _group_spectra(layers: list, idx: list[int], gates: Tensor, norms: Tensor, svals: Tensor) -> None:
    """Fill norms / singular values of one same-shape group of layers (in place)."""
    A = torch.stack([layers[i].lora_A for i in idx]).float()  # (g, r, d_in)
    B = torch.stack([layers[i].lora_B for i in idx]).float()  # (g, d_out, r)
    ga, gb = A @ A.transpose(1, 2), B.transpose(1, 2) @ B  # (g, r, r)
    norms[idx] = (torch.diagonal(ga, dim1=1, dim2=2) * torch.diagonal(gb, dim1=1, dim2=2)).clamp_min(0).sqrt()
    ev, vec = torch.linalg.eigh(ga.double())
    half = vec @ torch.diag_embed(ev.clamp_min(0).sqrt()) @ vec.transpose(1, 2)
    g = gates[idx].double()
    core = half @ (g[:, :, None] * gb.double() * g[:, None, :]) @ half
    svals[idx] = torch.linalg.eigvalsh((core + core.transpose(1, 2)) / 2).clamp_min(0).sqrt().float()


def similarity_features(desc: Tensor, r: int) -> Tensor:
    """Features for semantic kNN edges: the z-scored *update profile* (gates, norms, singular values).

    Node type and depth are left out (adjacency edges already encode them), so semantic edges link
    layers whose updates look alike. A fresh adapter has identical profiles; then the structural
    part is used, which gives the deterministic "same type, nearby depth" graph.
    """
    value = desc[:, : 3 * r]
    std = value.std(0, unbiased=False) if desc.shape[0] > 1 else torch.zeros(3 * r)
    keep = std > 1e-6
    if not bool(keep.any()):
        return desc[:, 3 * r :]
    return (value[:, keep] - value[:, keep].mean(0)) / std[keep]


@torch.no_grad()
def update_coupling(layers: list, nodes: list[Node], gates: Tensor, smooth: Tensor) -> Tensor:
    """``cos(B_l diag(g_l) A_l, B_j diag(g_j) A_j)`` on every smoothing edge (N x N, symmetric, 0 elsewhere and
    where an update is still 0): the measured coupling of adjacent layers (paper §3.3: layers whose updates are
    aligned; E.3 Property 2: the quantity the drift energy trades against). From r x r Grams, never a d x d."""
    from .diagnostics import filtered_gram

    with torch.autocast(gates.device.type, enabled=False):
        G = filtered_gram(layers, nodes, gates.detach().float())
    d = G.diagonal().clamp_min(0)
    norm = (d[:, None] * d[None, :]).sqrt()
    cos = torch.where(norm > 1e-20, G / norm.clamp_min(1e-20), torch.zeros_like(G))
    return cos.clamp(-1.0, 1.0).masked_fill(~smooth, 0.0)


def _shape_groups(nodes: list[Node]) -> dict[tuple[int, int], list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for nd in nodes:
        groups.setdefault(nd.shape, []).append(nd.index)
    return groups


# ----------------------------------------------------------------------------- GNN
class _GATLayer(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, dim, bias=False)
        self.att_src = nn.Parameter(torch.randn(dim) * dim**-0.5)
        self.att_dst = nn.Parameter(torch.randn(dim) * dim**-0.5)

    def forward(self, h: Tensor, adj: Tensor) -> Tensor:
        z = self.lin(h)
        e = F.leaky_relu((z @ self.att_src)[:, None] + (z @ self.att_dst)[None, :], 0.2)
        return torch.softmax(e.masked_fill(~adj, _NEG), dim=1) @ z


class _GCNLayer(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, dim, bias=False)

    def forward(self, h: Tensor, adj: Tensor) -> Tensor:
        a = adj.to(h.dtype)
        dinv = a.sum(1).clamp_min(1).rsqrt()
        return (dinv[:, None] * a * dinv[None, :]) @ self.lin(h)


class DescriptorGNN(nn.Module):
    """Residual GNN over node descriptors -> hidden states, smoothing weights and gate modulation."""

    def __init__(self, cfg: StructLoRAConfig, in_dim: int) -> None:
        super().__init__()
        hid = cfg.gnn_hidden
        self.inp = nn.Linear(in_dim, hid)
        conv = _GATLayer if cfg.gnn_type == "gat" else _GCNLayer
        self.convs = nn.ModuleList(conv(hid) for _ in range(cfg.gnn_layers))
        self.edge_lin = nn.Linear(hid, hid, bias=False)
        # zero logit head: every edge gate 2 sigmoid(0) = 1 at init, i.e. the fixed Laplacian smoother
        self.edge_src = nn.Parameter(torch.zeros(hid))
        self.edge_dst = nn.Parameter(torch.zeros(hid))
        self.modulation = cfg.modulation
        self.edge_weights = cfg.edge_weights
        self.mod = None
        if cfg.modulation != "off":
            self.mod = nn.Sequential(nn.Linear(hid, hid), nn.GELU(), nn.Linear(hid, cfg.r))
            nn.init.zeros_(self.mod[-1].weight)  # s_l = 1 at init: training starts as gated LoRA
            nn.init.zeros_(self.mod[-1].bias)

    def forward(
        self, desc: Tensor, adj: Tensor, smooth: Tensor, coupling: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Symmetric edge weights ``a`` (N x N, non-zero only on ``smooth``) and modulation ``s``
        (N x r, or None for modulation=off). ``normalized`` modulation divides ``1 + tanh`` by its per-layer
        mean: it may shift weight between a layer's directions but never changes the layer's mean gain.
        ``coupling`` (edge_weights=coupling): the signed cosine of the two layers' current filtered updates."""
        self_loops = adj | torch.eye(adj.shape[0], dtype=torch.bool, device=adj.device)
        h = self.inp(desc)
        for conv in self.convs:
            h = h + F.elu(conv(h, self_loops))  # residual message passing (paper eq. 6)
        z = self.edge_lin(h)
        e = F.leaky_relu((z @ self.edge_src)[:, None] + (z @ self.edge_dst)[None, :], 0.2)
        e = 0.5 * (e + e.T)  # one symmetric logit per edge: a weighted Laplacian exists
        if self.edge_weights == "free":
            a = (2.0 * torch.sigmoid(e)).masked_fill(~smooth, 0.0)  # 0 < a < 2 on smoothing edges, 1 at init
        elif self.edge_weights == "coupling":  # the measured coupling, rescaled by the GNN (x1 at init)
            a = (coupling.to(e.dtype) * 2.0 * torch.sigmoid(e)).clamp(-1.0, 1.0).masked_fill(~smooth, 0.0)
        else:  # normalized: n_edges x softmax over the smoothing edges, i.e. mean 1 (where to smooth, not how much);
            # in logit space, so no saturation can take the total to 0 (a sigmoid / its mean can underflow)
            flat = torch.softmax(e.masked_fill(~smooth, _NEG).flatten(), 0) * smooth.sum()
            a = flat.view_as(e).masked_fill(~smooth, 0.0)  # 1 on every edge at init (e = 0)
        if self.mod is None:
            return a, None
        s = 1.0 + torch.tanh(self.mod(h))
        if self.modulation == "normalized":
            s = s / s.mean(-1, keepdim=True)
        return a, s


# ----------------------------------------------------------------------------- smoothing
def weighted_laplacian(a: Tensor) -> Tensor:
    """``D_|a| - a``: the Laplacian of a (possibly signed) weighted graph, PSD either way (a signed edge
    a_lj < 0 penalises ||x_l + x_j||^2, anti-coupling)."""
    return torch.diag(a.abs().sum(1)) - a


def normalized_laplacian(a: Tensor) -> Tensor:
    """``I - D~^-1/2 (I + a) D~^-1/2`` with ``D~ = I + diag(sum_j |a_lj|)``: paper eq. 4's degree-normalised
    propagation with a self-loop (Kipf & Welling's renormalisation), signed. Every layer keeps a self-weight
    1 against its total coupling, so a weak coupling smooths weakly (no budget shared across the graph) and a
    full one (|a| = 1 to one neighbour) averages the pair: C = I - L is then the GCN step itself."""
    deg = 1.0 + a.abs().sum(1)
    dinv = deg.rsqrt()
    eye = torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    return eye - dinv[:, None] * (eye + a) * dinv[None, :]


def lambda_max(lap: Tensor) -> Tensor:
    """Largest eigenvalue of a (symmetric) Laplacian, computed, never assumed."""
    return torch.linalg.eigvalsh(lap.double())[-1].to(lap.dtype)


def smoothing_operator(
    a: Tensor, eta0: float, bound: Tensor | None = None, normalized: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """``C = I - eta L_a``; returns ``(C, eta, lambda_max(L_a))``.

    Unnormalised (``laplacian`` and the GNN's ``normalized``/``free`` weights): ``eta = min(eta0 /
    lambda_max(L_bound), 1 / lambda_max(L_a))`` (``bound`` defaults to ``a``): the strength is fixed by the
    unweighted graph, so learned weights change how much is smoothed instead of being normalised away, and the
    clamp keeps ``eta * lambda_max(L_a) <= 1`` (Theorem 1). ``normalized`` (edge_weights=coupling): ``L`` is the
    self-loop-normalised Laplacian and ``eta = min(eta0, 1 / lambda_max(L))``; its spectrum lies in [0, 2), so
    the strength needs no graph-wide rescaling. eta = 0 without edges."""
    lap = normalized_laplacian(a) if normalized else weighted_laplacian(a)
    lam = lambda_max(lap)
    if normalized:
        eta = torch.minimum(torch.as_tensor(eta0, dtype=lam.dtype), 1.0 / lam.clamp_min(1e-12))
        ref = lam
    else:
        ref = lam if bound is None else lambda_max(weighted_laplacian(bound.to(a.dtype)))
        eta = torch.minimum(eta0 / ref.clamp_min(1e-12), 1.0 / lam.clamp_min(1e-12))
    eta = torch.where((ref > 1e-12) & (lam > 1e-12), eta, torch.zeros_like(eta))
    eye = torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    return eye - eta * lap, eta, lam


class Coordinator(nn.Module):
    """Computes the coefficients of eq. (A) for the configured coordinator variant."""

    def __init__(self, cfg: StructLoRAConfig, in_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.gnn = DescriptorGNN(cfg, in_dim) if cfg.coordinator == "gnn" else None

    @property
    def smooths(self) -> bool:
        return self.cfg.coordinator in ("gnn", "laplacian", "coupling")

    @property
    def needs_coupling(self) -> bool:
        """Whether forward needs the measured coupling (cosines of adjacent filtered updates)."""
        return self.cfg.coordinator == "coupling" or (self.gnn is not None and self.cfg.edge_weights == "coupling")

    def forward(
        self, desc: Tensor | None, adj: Tensor, smooth: Tensor, coupling: Tensor | None = None
    ) -> dict[str, Tensor | None]:
        """``{"C": N x N or None, "s": N x r or None, "a", "eta", "lambda_max"}``."""
        if not self.smooths:
            return {"C": None, "s": None, "a": None, "eta": None, "lambda_max": None}
        if self.gnn is not None:
            a, s = self.gnn(desc.to(self.gnn.inp.weight.dtype), adj, smooth, coupling)
        elif self.cfg.coordinator == "coupling":  # the measured coupling itself, no learned parts
            a, s = coupling.float(), None
        else:
            a, s = smooth.float(), None
        C, eta, lam = smoothing_operator(a, self.cfg.smooth_eta, bound=smooth, normalized=self.needs_coupling)
        return {"C": C, "s": s, "a": a, "eta": eta, "lambda_max": lam}


def build_coordinator(cfg: StructLoRAConfig, n_kinds: int) -> Coordinator:
    """The coordinator of a fresh adapter, seeded by ``cfg.seed`` without touching the global RNG: identical on
    every rank, and what the what-moved record rebuilds as "the coordinator at init"."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return Coordinator(cfg, descriptor_dim(cfg.r, n_kinds))
