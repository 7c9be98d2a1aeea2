"""StructLoRA configuration (one dataclass, validated on construction).

Field names follow DESIGN.md §1 / issue 3. Every bad value raises a ``ValueError`` that names
the field, so a typo in a YAML recipe fails at start-up instead of silently training LoRA.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Union

GATES = ("hard_concrete", "gaussian", "gumbel")
FILTERS = ("ib", "topk_norm", "random", "none")
COORDINATORS = ("gnn", "laplacian", "cosine_penalty", "laplacian_penalty", "none")
GRAPHS = ("hybrid", "adjacency", "similarity")
GNN_TYPES = ("gat", "gcn")
SEMANTIC_SOURCES = ("params",)

# Target presets: regexes over ``named_modules()`` names. They accept both the transformers v5
# layout (model.vision_tower.encoder.layers.N...) and the v4 one
# (vision_tower.vision_model.encoder.layers.N..., language_model.model.layers.N...).
_TOWER = r"(?:^|\.)(?:vision_tower|language_model)\..*layers\.\d+\.self_attn\."
TARGET_PRESETS: dict[str, list[str]] = {
    "qv": [_TOWER + r"(?:q_proj|v_proj)$"],
    "qkv": [_TOWER + r"(?:q_proj|k_proj|v_proj)$"],
    "qkvo": [_TOWER + r"(?:q_proj|k_proj|v_proj|o_proj|out_proj)$"],
}


def _err(name: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"StructLoRAConfig.{name}={value!r} is invalid: expected {expected}")


@dataclass
class StructLoRAConfig:
    """All knobs of StructLoRA. Defaults = the paper's main setting (r=8, alpha=16, q/v, IB + 1-layer GAT, hybrid graph)."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: Union[str, list[str]] = "qv"
    # Stage 1: IB filter
    filter: str = "ib"
    gate: str = "hard_concrete"
    lambda_ib: float = 1e-3
    gate_init_open: float = 0.9          # initial P(open) / gate mean, so training starts near plain LoRA
    hard_concrete_temperature: float = 2.0 / 3.0
    gaussian_prior_mean: float = 0.0
    gaussian_prior_std: float = 1.0
    gaussian_init_std: float = 0.1
    gumbel_prior_p: float = 0.5
    gumbel_tau_start: float = 1.0
    gumbel_tau_end: float = 0.1
    keep_k: int | None = None            # directions kept by topk_norm / random (default r // 2)
    topk_refresh_steps: int = 100
    open_threshold: float = 1e-2         # |eval gate| above this counts as an open direction (diagnostics)
    # Stage 2: graph coordinator
    coordinator: str = "gnn"
    graph: str = "hybrid"
    gnn_layers: int = 1
    gnn_type: str = "gat"
    gnn_hidden: int = 32
    smooth_eta: float = 0.5              # eta_0: eta = eta_0 / lambda_max(L_a), so eta * lambda_max <= 1
    knn_k: int = 2                       # semantic neighbours per node (similarity / hybrid graphs)
    bridge_layers: int = 2               # vision-top <-> LM-bottom bridge pairs per projection type
    graph_refresh_steps: int = 100
    semantic_source: str = "params"
    lambda_penalty: float = 1e-2
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        for f in fields(self):  # NaN/inf slip through every `<` check below, so reject them first
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise _err(f.name, value, "a finite number")
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise _err("r", self.r, "a positive int")
        if not self.alpha > 0:
            raise _err("alpha", self.alpha, "a positive number")
        if not 0.0 <= self.dropout < 1.0:
            raise _err("dropout", self.dropout, "a float in [0, 1)")
        self._validate_targets()
        for name, allowed in (("gate", GATES), ("filter", FILTERS), ("coordinator", COORDINATORS),
                              ("graph", GRAPHS), ("gnn_type", GNN_TYPES),
                              ("semantic_source", SEMANTIC_SOURCES)):
            if getattr(self, name) not in allowed:
                raise _err(name, getattr(self, name), f"one of {list(allowed)}")
        if not isinstance(self.gnn_layers, int) or not 1 <= self.gnn_layers <= 3:
            raise _err("gnn_layers", self.gnn_layers, "an int in 1..3")
        if self.gnn_hidden <= 0:
            raise _err("gnn_hidden", self.gnn_hidden, "a positive int")
        if not 0.0 < self.smooth_eta <= 1.0:
            raise _err("smooth_eta", self.smooth_eta, "a float in (0, 1] (eta * lambda_max <= 1)")
        for name in ("lambda_ib", "lambda_penalty"):
            if getattr(self, name) < 0:
                raise _err(name, getattr(self, name), "a non-negative number")
        for name in ("graph_refresh_steps", "topk_refresh_steps", "knn_k"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise _err(name, getattr(self, name), "a positive int")
        if self.bridge_layers < 0:
            raise _err("bridge_layers", self.bridge_layers, "a non-negative int")
        if not 0.0 < self.gate_init_open < 1.0:
            raise _err("gate_init_open", self.gate_init_open, "a float in (0, 1)")
        if not 0.0 < self.gumbel_prior_p < 1.0:
            raise _err("gumbel_prior_p", self.gumbel_prior_p, "a float in (0, 1)")
        if not (self.gumbel_tau_start > 0 and self.gumbel_tau_end > 0):
            raise _err("gumbel_tau_start/gumbel_tau_end", (self.gumbel_tau_start, self.gumbel_tau_end), "positive")
        if self.hard_concrete_temperature <= 0 or self.gaussian_prior_std <= 0 or self.gaussian_init_std <= 0:
            raise _err("hard_concrete_temperature/gaussian_*_std", None, "positive numbers")
        if self.keep_k is not None and not 1 <= self.keep_k <= self.r:
            raise _err("keep_k", self.keep_k, f"None or an int in 1..r (r={self.r})")

    def _validate_targets(self) -> None:
        import re

        if isinstance(self.targets, str):
            if self.targets not in TARGET_PRESETS:
                raise _err("targets", self.targets, f"one of {list(TARGET_PRESETS)} or a list of regexes")
            return
        if not isinstance(self.targets, (list, tuple)) or not self.targets:
            raise _err("targets", self.targets, "a preset name or a non-empty list of regexes")
        for pat in self.targets:
            try:
                re.compile(pat)
            except (re.error, TypeError) as exc:
                raise _err("targets", pat, f"a valid regex ({exc})") from exc

    # ------------------------------------------------------------------ helpers
    @property
    def scale(self) -> float:
        return float(self.alpha) / self.r

    @property
    def k_keep(self) -> int:
        return self.keep_k if self.keep_k is not None else max(1, self.r // 2)

    def target_patterns(self) -> list[str]:
        return list(TARGET_PRESETS[self.targets]) if isinstance(self.targets, str) else list(self.targets)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StructLoRAConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        if data.get("extra") == {}:  # written by versions that had an (unused) `extra` field
            data = {k: v for k, v in data.items() if k != "extra"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"StructLoRAConfig: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)
