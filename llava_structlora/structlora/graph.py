"""The joint vision <-> language graph over adapted layers (docs/design.md §1, "Graph").

One node per adapted linear layer of BOTH towers. Edge kinds:

- ``adjacent``: layer l <-> l+1 of the same projection inside one tower (the depth chain);
- ``qv``: the adapted projections of one block (q <-> v for ``targets="qv"``);
- ``bridge``: the top vision layers that feed the projector <-> the bottom LM layers;
- ``semantic``: k nearest neighbours by cosine of node descriptors (``graph=similarity|hybrid``),
  computed from parameters so every data-parallel rank builds the same graph.

The graph is small (112 nodes for LLaVA-1.5-7B with q/v targets) and kept as an explicit edge
list that tests, logs and plots can inspect. Smoothing (eq. A) uses only the edges whose
endpoints have the same weight shape; the descriptor GNN uses all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import Tensor

EDGE_KINDS = ("adjacent", "qv", "bridge", "semantic")
_LAYER_RE = re.compile(r"layers\.(\d+)\.")


@dataclass(frozen=True)
class Node:
    index: int
    name: str
    tower: str  # "vision" | "language" | "other"
    proj: str  # last name component, e.g. "q_proj"
    layer: int  # block index inside its tower
    depth: float  # layer / (n_layers_in_tower - 1), in [0, 1]
    shape: tuple[int, int]

    @property
    def kind(self) -> str:
        """Tower + projection, the node type used in descriptors (e.g. 'vision.q_proj')."""
        return f"{self.tower}.{_canonical_proj(self.proj)}"


def _canonical_proj(proj: str) -> str:
    return "o_proj" if proj == "out_proj" else proj


def _tower_of(name: str) -> str:
    if "vision_tower" in name:
        return "vision"
    if "language_model" in name:
        return "language"
    return "other"


def describe_nodes(names: list[str], shapes: list[tuple[int, int]], tower_layers: dict[str, int]) -> list[Node]:
    """Nodes in a deterministic order (vision first, then language, by layer, then projection)."""
    rows = []
    for name, shape in zip(names, shapes):
        m = _LAYER_RE.search(name)
        tower = _tower_of(name)
        layer = int(m.group(1)) if m else 0
        rows.append((("vision", "language", "other").index(tower), layer, name.rsplit(".", 1)[-1], name, shape, tower))
    rows.sort()
    seen: dict[str, int] = {}  # towers of unknown depth (no model config): deepest adapted layer + 1
    for _, layer, _, _, _, tower in rows:
        seen[tower] = max(seen.get(tower, 0), layer + 1)
    nodes = []
    for i, (_, layer, proj, name, shape, tower) in enumerate(rows):
        n_layers = max(tower_layers.get(tower, seen[tower]), 1)
        nodes.append(Node(i, name, tower, proj, layer, layer / max(n_layers - 1, 1), tuple(shape)))
    return nodes


@dataclass
class StructLoRAGraph:
    """Nodes + undirected edges ``(i, j, kind)`` with ``i < j``."""

    nodes: list[Node]
    edges: list[tuple[int, int, str]] = field(default_factory=list)

    @property
    def num_nodes(self) -> int:
        return len(self.nodes)

    def edge_list(self) -> list[tuple[str, str, str]]:
        """Human-readable edges: (module name, module name, kind)."""
        return [(self.nodes[i].name, self.nodes[j].name, k) for i, j, k in self.edges]

    def kinds(self) -> dict[str, int]:
        out = {k: 0 for k in EDGE_KINDS}
        for _, _, k in self.edges:
            out[k] += 1
        return out

    def adjacency(self, device=None) -> Tensor:
        """Symmetric boolean ``N x N`` adjacency (no self loops)."""
        adj = torch.zeros(self.num_nodes, self.num_nodes, dtype=torch.bool, device=device)
        if self.edges:
            idx = torch.tensor([(i, j) for i, j, _ in self.edges], device=device)
            adj[idx[:, 0], idx[:, 1]] = True
            adj[idx[:, 1], idx[:, 0]] = True
        return adj

    def smoothing_mask(self, device=None) -> Tensor:
        """Edges usable in eq. (A): both endpoints have the same weight shape."""
        shapes = [n.shape for n in self.nodes]
        same = torch.tensor([[a == b for b in shapes] for a in shapes], dtype=torch.bool, device=device)
        return self.adjacency(device) & same

    def to_json(self) -> dict:
        """The one serialization of a graph (save_structlora writes it; from_json reads it back)."""
        return {"edges": [[i, j, k] for i, j, k in self.edges], "nodes": [n.name for n in self.nodes]}

    @classmethod
    def from_json(cls, data: dict, nodes: list[Node], source: str = "graph") -> StructLoRAGraph:
        """The graph of ``to_json`` on the model's ``nodes``; ValueError (naming ``source``) if they differ."""
        names = [n.name for n in nodes]
        if data.get("nodes") != names:
            raise ValueError(
                f"{source}: graph nodes differ from the model's adapted modules: "
                f"{sorted(set(names) ^ set(data.get('nodes') or []))[:5]}"
            )
        return cls(nodes, [(int(i), int(j), str(k)) for i, j, k in data["edges"]])


def structural_edges(nodes: list[Node], bridge_layers: int, vision_top: int | None) -> list[tuple[int, int, str]]:
    """Depth-chain, intra-block and vision->LM bridge edges."""
    edges: dict[tuple[int, int], str] = {}

    def add(a: int, b: int, kind: str) -> None:
        key = (min(a, b), max(a, b))
        if a != b and key not in edges:
            edges[key] = kind

    by_block: dict[tuple[str, int], list[Node]] = {}
    for n in nodes:
        by_block.setdefault((n.tower, n.layer), []).append(n)
    for i, j, _ in chain_edges(nodes):
        add(i, j, "adjacent")
    for block in by_block.values():
        for i, a in enumerate(block):
            for b in block[i + 1 :]:
                add(a.index, b.index, "qv")
    for a, b in _bridge_pairs(nodes, bridge_layers, vision_top):
        add(a, b, "bridge")
    return [(i, j, k) for (i, j), k in sorted(edges.items())]


def chain_edges(nodes: list[Node]) -> list[tuple[int, int, str]]:
    """The depth chain: consecutive adapted layers of each node type (tower + projection).

    The only smoothing a 7B run can do (its CLIP and Llama widths differ, and the chain never mixes
    q with v), hence ``smooth_edges=chain`` smooths along these edges whatever ``graph`` is."""
    by_kind: dict[str, list[Node]] = {}
    for n in nodes:
        by_kind.setdefault(n.kind, []).append(n)
    out = []
    for chain in by_kind.values():
        chain = sorted(chain, key=lambda n: n.layer)
        out += [(min(a.index, b.index), max(a.index, b.index), "adjacent") for a, b in zip(chain, chain[1:])]
    return sorted(out)


def _bridge_pairs(nodes: list[Node], bridge_layers: int, vision_top_layer: int | None) -> list[tuple[int, int]]:
    """Pair the vision layer feeding the projector (and the ones below it) with LM layers 0, 1, ..."""
    vis = [n for n in nodes if n.tower == "vision"]
    lm = [n for n in nodes if n.tower == "language"]
    if not vis or not lm or bridge_layers == 0:
        return []
    top = max(n.layer for n in vis)
    if vision_top_layer is not None:
        top = min(top, vision_top_layer)
    pairs = []
    lm_layers = sorted({n.layer for n in lm})
    for i in range(min(bridge_layers, len(lm_layers))):
        for v in (n for n in vis if n.layer == top - i):
            for t in (n for n in lm if n.layer == lm_layers[i] and _canonical_proj(n.proj) == _canonical_proj(v.proj)):
                pairs.append((v.index, t.index))
    return pairs


def vision_top_layer(vision_feature_layer, n_vision_layers: int) -> int | None:
    """0-based index of the last vision layer whose output reaches the projector.

    ``hidden_states[k]`` is the output of layer ``k - 1`` (index 0 = embeddings); LLaVA-1.5 uses
    ``vision_feature_layer=-2``, so the last CLIP layer is not used and the bridge starts below it.
    """
    if vision_feature_layer is None:
        return None
    layers = vision_feature_layer if isinstance(vision_feature_layer, (list, tuple)) else [vision_feature_layer]
    tops = [(n_vision_layers + 1 + v if v < 0 else v) - 1 for v in layers]
    return max(tops)


def semantic_edges(desc: Tensor, k: int, exclude: Tensor | None = None) -> list[tuple[int, int, str]]:
    """Symmetrized kNN by descriptor cosine: each node picks its k most similar non-neighbours.

    Sparse by construction (at most k * N edges). Ties are broken by node index (stable sort) so
    the result is identical on every rank.
    """
    n = desc.shape[0]
    if n < 2:
        return []
    x = desc.detach().double()
    x = torch.nn.functional.normalize(x - x.mean(0, keepdim=True), dim=1)  # correlation: shared parts don't dominate
    sim = x @ x.T
    blocked = torch.eye(n, dtype=torch.bool, device=desc.device)
    if exclude is not None:
        blocked |= exclude.to(desc.device)
    sim = sim.masked_fill(blocked, float("-inf"))
    order = torch.sort(sim, dim=1, descending=True, stable=True).indices[:, :k]
    out = set()
    for i in range(n):
        for j in order[i].tolist():
            if sim[i, j] != float("-inf"):
                out.add((min(i, j), max(i, j)))
    return [(i, j, "semantic") for i, j in sorted(out)]


def build_graph(
    nodes: list[Node], kind: str, desc: Tensor, knn_k: int, bridge_layers: int, vision_top: int | None
) -> StructLoRAGraph:
    """``adjacency`` | ``similarity`` | ``hybrid`` (union; semantic edges only add new pairs)."""
    g = StructLoRAGraph(nodes)
    if kind in ("adjacency", "hybrid"):
        g.edges = structural_edges(nodes, bridge_layers, vision_top)
    if kind in ("similarity", "hybrid"):
        g.edges = sorted(g.edges + semantic_edges(desc, knn_k, exclude=g.adjacency(desc.device)))
    return g
