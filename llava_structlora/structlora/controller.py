"""Runtime glue: runs the coordinator ONCE per model forward and hands each layer its plan.

``StructLoRAController`` is registered as the submodule ``structlora`` of the adapted model, so
the optimizer / DeepSpeed see the coordinator parameters and ``.to()`` moves its buffers. A
forward pre-hook on the top model samples every gate, runs the descriptor GNN, computes the
smoothing operator ``C = I - eta L_a`` and turns it into per-layer coefficient vectors, which stay
installed until the next top-level forward (so activation checkpointing recomputes with the same
coefficients). Layers called before any top-level forward compute a plan lazily.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .config import StructLoRAConfig
from .coordinator import (
    build_coordinator,
    node_descriptors,
    similarity_features,
    structural_descriptors,
    update_coupling,
)
from .gates import MaskGate, gumbel_temperature, topk_mask
from .graph import Node, StructLoRAGraph, build_graph, chain_edges
from .layer import Plan, StructLoRALinear

logger = logging.getLogger(__name__)


def adapter_tensors(layer: StructLoRALinear) -> list[Tensor]:
    """The StructLoRA tensors of one layer (factors + gate parameters/masks), not the base weight."""
    out = [layer.lora_A, layer.lora_B]
    if layer.gate is not None:
        out += [getattr(layer.gate, n) for n in layer.gate.param_names]
    return out


def _reject_reentrant_checkpointing(model: nn.Module) -> None:
    """Reentrant checkpointing backpropagates each layer's captured coefficients separately, which
    would traverse the shared coordinator graph once per layer; refuse it with a clear message."""
    for mod in model.modules():
        fn = getattr(mod, "_gradient_checkpointing_func", None)
        if getattr(mod, "gradient_checkpointing", False) and getattr(fn, "keywords", {}).get("use_reentrant", False):
            raise ValueError(
                "StructLoRA needs non-reentrant activation checkpointing: enable it with "
                "gradient_checkpointing_kwargs={'use_reentrant': False} (the transformers v5 default)"
            )


class StructLoRAController(nn.Module):
    """Owns the coordinator, the joint graph and the per-forward plans of all adapted layers."""

    def __init__(
        self, cfg: StructLoRAConfig, layers: list[StructLoRALinear], nodes: list[Node], vision_top: Optional[int]
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.layers = layers  # plain list: the layers stay owned by the model tree
        self.nodes = nodes
        self.kinds = sorted({n.kind for n in nodes})
        self.vision_top = vision_top
        dev = layers[0].lora_A.device
        self.coordinator = build_coordinator(cfg, len(self.kinds)).to(dev)
        self.register_buffer("step", torch.zeros((), dtype=torch.long, device=dev))
        self.register_buffer("tau", torch.tensor(cfg.gumbel_tau_start, device=dev))
        desc = similarity_features(structural_descriptors(nodes, cfg.r, self.kinds), cfg.r)
        self.set_graph(build_graph(nodes, cfg.graph, desc, cfg.knn_k, cfg.bridge_layers, vision_top))
        if cfg.coordinator == "gnn" and not self.gnn_is_effective:
            logger.warning(
                "coordinator=gnn cannot change this model's update: with smooth_edges=%s the model has too few "
                "smoothing edges for edge_weights=%s and modulation=off, so the GNN gets no gradient. Use "
                "smooth_edges=same_shape, more adapted layers per projection type, or modulation=normalized.",
                cfg.smooth_edges,
                cfg.edge_weights,
            )
        self._eval_cache: Optional[tuple[Any, Optional[list[Plan]]]] = None
        self._desc_cache: Optional[tuple[Any, Tensor]] = None
        self._coupling_cache: Optional[tuple[Any, Tensor]] = None
        self._step = 0  # python mirror of the ``step`` buffer (no device sync in cache keys)
        self._max_steps = 0  # of the run, from on_step (the IB warm-up's fraction form needs it)
        self._hooks: list = []
        for layer in layers:
            layer._plan_fn = self._lazy_plan

    @property
    def gnn_is_effective(self) -> bool:
        """Whether the GNN's output reaches the update: through modulation, or through the smoothing weights
        (free: any smoothing edge; normalized to mean 1: at least two edges, else the one weight is always 1)."""
        n_edges = sum(c - 1 for c in self.counts) // 2  # counts: self + smoothing neighbours per layer
        return self.cfg.modulation != "off" or n_edges >= (1 if self.cfg.edge_weights == "free" else 2)

    # ------------------------------------------------------------------ graph structure
    def set_graph(self, graph: StructLoRAGraph) -> None:
        """Install a graph: adjacency, smoothing mask and the flat (row, col) term lists of eq. (A)."""
        self.graph = graph
        dev = self.step.device
        adj = graph.adjacency()
        chain = StructLoRAGraph(graph.nodes, chain_edges(graph.nodes))
        smooth = (chain if self.cfg.smooth_edges == "chain" else graph).smoothing_mask()
        rows, cols, counts = [], [], []
        for i in range(graph.num_nodes):
            nb = [i] + smooth[i].nonzero().flatten().tolist()
            rows += [i] * len(nb)
            cols += nb
            counts.append(len(nb))
        self.register_buffer("adj", adj.to(dev), persistent=False)
        self.register_buffer("smooth", smooth.to(dev), persistent=False)
        self.register_buffer("rows", torch.tensor(rows, device=dev), persistent=False)
        self.register_buffer("cols", torch.tensor(cols, device=dev), persistent=False)
        self.counts = counts
        self.term_index = [cols[sum(counts[:i]) : sum(counts[: i + 1])] for i in range(len(counts))]
        self.drop_caches()

    def drop_caches(self) -> None:
        """Forget the cached descriptors and eval plans. Their keys are parameter version counters, which an
        update that bypasses autograd's counters (a fused optimizer, ``.data``) leaves unchanged, so every
        change the controller knows of (a step, a graph, a top-k refresh) and every one-off state drops them."""
        self._desc_cache = self._eval_cache = self._coupling_cache = None

    # ------------------------------------------------------------------ coordinator state
    def gates(self, training: bool) -> Tensor:
        """``(N, r)`` gate values: sampled in training, deterministic in eval."""
        first = self.layers[0]
        if first.gate is None:
            return torch.ones(len(self.layers), self.cfg.r, device=first.lora_A.device)
        cls = type(first.gate)
        stacked = cls.stack([l.gate for l in self.layers])
        if training:
            return cls.train_value(stacked, self.cfg, self.tau)
        return cls.evaluate(stacked, self.cfg)

    def descriptors(self) -> Tensor:
        """Detached node descriptors, recomputed only when the adapter changed (not per micro-batch)."""
        key = self._param_key()
        if self._desc_cache is None or self._desc_cache[0] != key:
            desc = node_descriptors(self.layers, self.nodes, self.kinds, self.gates(False).detach(), self.cfg.scale)
            self._desc_cache = (key, desc)
        return self._desc_cache[1]

    def _param_key(self) -> tuple:
        """Changes whenever an optimizer step (version counter) or ``on_step`` (step) touched the adapter."""
        return (self._step, tuple(t._version for l in self.layers for t in adapter_tensors(l)))

    def coupling(self) -> Tensor:
        """Signed cosine of the current filtered updates ``B diag(g) A`` of every smoothing edge's two layers
        (detached; 0 off the smoothing edges and while an update is 0), cached like the descriptors."""
        key = self._param_key()
        if self._coupling_cache is None or self._coupling_cache[0] != key:
            self._coupling_cache = (key, update_coupling(self.layers, self.nodes, self.gates(False), self.smooth))
        return self._coupling_cache[1]

    def state(self, training: bool) -> dict[str, Any]:
        """Gates, modulation, smoothing operator and per-direction coefficients ``m`` (incl. alpha/r)."""
        gates = self.gates(training)
        desc = self.descriptors() if self.coordinator.gnn is not None else None
        coupling = self.coupling() if self.coordinator.needs_coupling else None
        out = self.coordinator(desc, self.adj, self.smooth, coupling)
        m = gates if out["s"] is None else gates * out["s"]
        return {"gates": gates, "m": m * self.cfg.scale, **out}

    def plans(self, state: dict[str, Any]) -> Optional[list[Plan]]:
        """Per-layer ``(terms, coefficients)``; ``None`` means plain LoRA (bitwise PEFT)."""
        if self.layers[0].gate is None and state["C"] is None and state["s"] is None:
            return None
        m, C = state["m"], state["C"]
        if C is None:
            return [([layer], m[i]) for i, layer in enumerate(self.layers)]
        vals = C[self.rows, self.cols][:, None] * m[self.cols]  # (T, r), one gather for all layers
        return [
            ([self.layers[j] for j in idx], chunk.reshape(-1))
            for idx, chunk in zip(self.term_index, vals.split(self.counts))
        ]

    def current_plans(self) -> Optional[list[Plan]]:
        """Plans for this forward; cached in eval under no_grad (generation calls forward per token)."""
        if self.training or torch.is_grad_enabled():
            self._eval_cache = None
            return self.plans(self.state(self.training))
        key = (self._param_key(), tuple(p._version for p in self.parameters()))
        if self._eval_cache is None or self._eval_cache[0] != key:
            # fresh descriptors too: a fused optimizer may update parameters without bumping their version
            # counters, so after the last training step the descriptor key can match stale descriptors
            self._desc_cache = self._coupling_cache = None
            self._eval_cache = (key, self.plans(self.state(False)))
        return self._eval_cache[1]

    # ------------------------------------------------------------------ hooks
    def attach(self, model: nn.Module) -> None:
        # Plans stay installed after the forward: activation checkpointing recomputes layers in
        # backward and must see the very same coefficients (same gate samples) as the forward.
        self._hooks = [model.register_forward_pre_hook(self._pre_hook)]

    def detach_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        for layer in self.layers:
            layer._plan, layer._plan_fn = None, None

    def _pre_hook(self, module: nn.Module, args: Any) -> None:
        if self.training and torch.is_grad_enabled():
            _reject_reentrant_checkpointing(module)
        self._install(self.current_plans())

    def _install(self, plans: Optional[list[Plan]]) -> None:
        for i, layer in enumerate(self.layers):
            layer._plan = None if plans is None else plans[i]
            layer._plan_fn = None if plans is not None else self._lazy_plan

    def _lazy_plan(self, layer: StructLoRALinear) -> Optional[Plan]:
        plans = self.current_plans()
        return None if plans is None else plans[self.layers.index(layer)]

    # ------------------------------------------------------------------ schedule
    @torch.no_grad()
    def on_step(self, step: int, max_steps: int) -> None:
        """Temperature annealing, similarity-graph refresh and top-k recomputation (identical on all ranks)."""
        cfg = self.cfg
        self.step.fill_(int(step))
        self._step, self._max_steps = int(step), int(max_steps)
        self.drop_caches()
        self.tau.fill_(gumbel_temperature(cfg, step, max_steps))
        if step > 0 and cfg.graph in ("similarity", "hybrid") and step % cfg.graph_refresh_steps == 0:
            self.refresh_graph()
        if step > 0 and cfg.filter == "topk_norm" and step % cfg.topk_refresh_steps == 0:
            self.refresh_topk()

    def ib_weight(self, cfg: Optional[StructLoRAConfig] = None) -> float:
        """lambda_ib times the linear warm-up factor at the current step (of ``cfg``, default the controller's)."""
        cfg = cfg if cfg is not None else self.cfg
        w = cfg.ib_warmup_steps
        steps = w * self._max_steps if 0 < w < 1 else w
        return cfg.lambda_ib * (min(1.0, self._step / steps) if steps > 0 else 1.0)

    @torch.no_grad()
    def refresh_graph(self) -> None:
        cfg = self.cfg
        desc = similarity_features(self.descriptors(), cfg.r)
        self.set_graph(build_graph(self.nodes, cfg.graph, desc, cfg.knn_k, cfg.bridge_layers, self.vision_top))

    @torch.no_grad()
    def refresh_topk(self) -> None:
        for layer in self.layers:
            assert isinstance(layer.gate, MaskGate)
            norms = layer.lora_B.norm(dim=0) * layer.lora_A.norm(dim=1)
            layer.gate.mask.copy_(topk_mask(norms.float(), self.cfg.k_keep))
        self.drop_caches()
