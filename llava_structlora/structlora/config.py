"""StructLoRA configuration (one dataclass, validated on construction).

Field names follow docs/design.md §1. Every bad value raises a ``ValueError`` that names
the field, so a typo in a YAML recipe fails at start-up instead of silently training LoRA.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Union

GATES = ("hard_concrete", "gaussian", "gumbel")
FILTERS = ("ib", "topk_norm", "random", "layer_scale", "none")
COORDINATORS = ("gnn", "laplacian", "coupling", "cosine_penalty", "laplacian_penalty", "none")
GRAPHS = ("hybrid", "adjacency", "similarity")
GNN_TYPES = ("gat", "gcn")
GATE_NOISES = ("sample", "none")
MODULATIONS = ("off", "normalized", "free")
SMOOTH_EDGES = ("chain", "same_shape")
EDGE_WEIGHTS = ("normalized", "free", "coupling")
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


# What a config saved before the trainability fixes meant (no such fields then): free modulation, smoothing over every
# same-shape edge, dead layers adapted; its gate init no longer matters once its tensors are loaded.
LEGACY_BEHAVIOUR: dict[str, Any] = {
    "modulation": "free",
    "smooth_edges": "same_shape",
    "keep_dead_layers": True,
    "gate_lr_mult": 1.0,
    "coordinator_lr_mult": 1.0,
}


def _err(name: str, value: Any, expected: str) -> ValueError:
    return ValueError(f"StructLoRAConfig.{name}={value!r} is invalid: expected {expected}")


def _f(default: Any, help: str) -> Any:
    """A dataclass field with its help text (the CLI/YAML and docs are generated from it)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class StructLoRAConfig:
    """All knobs of StructLoRA. Defaults: the paper's main setting (r=8, alpha=16, q/v, IB + 1-layer GAT,
    hybrid graph) with the trainability fixes (see docs/structlora.md, "Knobs")."""

    r: int = _f(8, "Adapter (LoRA) rank r.")
    alpha: float = _f(16.0, "Adapter scale alpha (update scale alpha / r).")
    dropout: float = _f(0.0, "Adapter input dropout.")
    targets: Union[str, list[str]] = _f(
        "qv",
        f"Target preset ({'|'.join(TARGET_PRESETS)}: both towers' self_attn projections) or a list of regexes "
        "over named_modules().",
    )
    keep_dead_layers: bool = _f(
        False,
        "Also adapt layers whose output the model never uses (vision layers "
        "above vision_feature_layer); off: their adapters would stay B = 0.",
    )
    # Stage 1: IB filter
    filter: str = _f(
        "ib",
        "ib (IB-regularized gates) | topk_norm (keep the keep_k largest ||B[:,k]|| ||A[k,:]||, recomputed every "
        "topk_refresh_steps; all open before the first refresh) | random (a fixed seeded subset of keep_k) | "
        "layer_scale (one learned scalar per layer, init 1, no KL: not in the paper, the control that separates "
        "coordination from a per-layer change of update scale) | none.",
    )
    gate: str = _f(
        "hard_concrete",
        "hard_concrete (L0, (gamma, zeta) = (-0.1, 1.1)) | gaussian (KL to N(gaussian_prior_mean, "
        "gaussian_prior_std^2)) | gumbel (straight-through relaxed Bernoulli, tau gumbel_tau_start -> "
        "gumbel_tau_end, KL to Bernoulli(gumbel_prior_p)).",
    )
    gate_init: float = _f(
        1.0,
        "Evaluation gate at init, in (0, 1]; 1 = an untrained adapter merges to plain LoRA "
        "(gumbel: eval gate is 1 iff gate_init > 0.5; see docs).",
    )
    gate_noise: str = _f("sample", "sample: stochastic gates in training (paper) | none: the eval gate in training.")
    gate_lr_mult: float = _f(300.0, "Gate parameters' lr = learning_rate x this (no weight decay).")
    lambda_ib: float = _f(
        1e-3,
        "IB strength PER GATE: the regularizer is lambda_ib x the sum over all gates, so the "
        "pressure on one gate does not depend on the number of layers or on r.",
    )
    ib_warmup_steps: float = _f(0.0, "Linear warm-up of lambda_ib: >= 1 steps, < 1 fraction of the run, 0 none.")
    hard_concrete_temperature: float = _f(2.0 / 3.0, "Hard-concrete temperature beta.")
    gaussian_prior_mean: float = _f(0.0, "Gaussian gate: prior mean of the KL term.")
    gaussian_prior_std: float = _f(1.0, "Gaussian gate: prior std of the KL term.")
    gaussian_init_std: float = _f(0.1, "Gaussian gate: initial noise std (training samples mu + std * eps).")
    gumbel_prior_p: float = _f(0.5, "Gumbel gate: Bernoulli prior P(open) of the KL term.")
    gumbel_tau_start: float = _f(1.0, "Gumbel gate: temperature at step 0 (annealed exponentially).")
    gumbel_tau_end: float = _f(0.1, "Gumbel gate: temperature at the last step.")
    keep_k: Optional[int] = _f(None, "Directions kept by filter=topk_norm/random (default r // 2).")
    topk_refresh_steps: int = _f(100, "filter=topk_norm: recompute the top-k mask every N steps.")
    open_threshold: float = _f(1e-2, "|eval gate x modulation| above this counts as an open direction (diagnostics).")
    # Stage 2: graph coordinator
    coordinator: str = _f(
        "coupling",
        "coupling (a_lj = the measured signed cosine of the two layers' current updates, self-loop-normalised as "
        "paper eq. 4; no trained parameters; the default since 2026-12-07 because the paper's learned GNN "
        "collapses its smoothing onto one edge chosen by the seed and this does not: docs/structlora.md) | gnn (the "
        "paper's: a descriptor GNN learns a_lj) | laplacian (a_lj = 1: the fixed smoother) | cosine_penalty, "
        "laplacian_penalty (paper App. C: a loss of weight lambda_penalty on adjacent same-shape updates, no "
        "smoothing) | none.",
    )
    coordinator_lr_mult: float = _f(10.0, "Coordinator (GNN) parameters' lr = learning_rate x this (no weight decay).")
    graph: str = _f("hybrid", "adjacency | similarity | hybrid (their union): the edges the descriptor GNN sees.")
    smooth_edges: str = _f(
        "chain",
        "Edges the smoothing (I - eta L_a) may use: chain = the depth chain of each "
        "projection type (what a 7B run can do) | same_shape = every same-shape graph edge.",
    )
    edge_weights: str = _f(
        "normalized",
        "The GNN's smoothing weights a_lj (1 at init, the fixed Laplacian): normalized = n_edges x a softmax of "
        "the edge logits (mean 1: the GNN decides where to smooth, smooth_eta how much) | free = 2 sigmoid(logit) "
        "(it also decides how much; trained on the task loss alone it switches the smoothing off) | coupling = the "
        "measured signed cosine of adjacent updates x 2 sigmoid(logit), self-loop-normalised (the trained gate "
        "switches it off; coordinator=coupling is the measured coupling alone).",
    )
    modulation: str = _f(
        "off",
        "GNN gate modulation s_l (not in the paper): off | normalized (mean 1 per layer) | "
        "free (1 + tanh, a gain in (0, 2)).",
    )
    gnn_layers: int = _f(1, "Message-passing layers of the descriptor GNN (1-3).")
    gnn_type: str = _f("gat", "gat | gcn: the descriptor GNN's layer type.")
    gnn_hidden: int = _f(32, "Hidden width of the descriptor GNN.")
    smooth_eta: float = _f(
        0.5,
        "eta_0: eta = eta_0 / lambda_max(L_M) of the unweighted smoothing graph M (the fixed Laplacian's and "
        "the untrained GNN's strength), clamped to 1 / lambda_max(L_a) so eta * lambda_max <= 1 (Theorem 1).",
    )
    knn_k: int = _f(2, "Semantic neighbours per node (graph=similarity|hybrid).")
    bridge_layers: int = _f(2, "Vision-top <-> LM-bottom bridge pairs per projection type.")
    graph_refresh_steps: int = _f(100, "Rebuild the semantic edges every N steps.")
    semantic_source: str = _f("params", "|".join(SEMANTIC_SOURCES) + " (parameters: identical on every rank).")
    lambda_penalty: float = _f(1e-2, "Strength of coordinator=cosine_penalty|laplacian_penalty.")
    seed: int = _f(0, "Seed of adapter, gate and coordinator init.")

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
        for name, allowed in (
            ("gate", GATES),
            ("filter", FILTERS),
            ("coordinator", COORDINATORS),
            ("graph", GRAPHS),
            ("gnn_type", GNN_TYPES),
            ("semantic_source", SEMANTIC_SOURCES),
            ("gate_noise", GATE_NOISES),
            ("modulation", MODULATIONS),
            ("smooth_edges", SMOOTH_EDGES),
            ("edge_weights", EDGE_WEIGHTS),
        ):
            if getattr(self, name) not in allowed:
                raise _err(name, getattr(self, name), f"one of {list(allowed)}")
        if not isinstance(self.gnn_layers, int) or not 1 <= self.gnn_layers <= 3:
            raise _err("gnn_layers", self.gnn_layers, "an int in 1..3")
        if self.gnn_hidden <= 0:
            raise _err("gnn_hidden", self.gnn_hidden, "a positive int")
        if not 0.0 < self.smooth_eta <= 1.0:
            raise _err("smooth_eta", self.smooth_eta, "a float in (0, 1] (eta * lambda_max <= 1)")
        for name in ("lambda_ib", "lambda_penalty", "open_threshold"):
            if getattr(self, name) < 0:
                raise _err(name, getattr(self, name), "a non-negative number")
        for name in ("graph_refresh_steps", "topk_refresh_steps", "knn_k"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise _err(name, getattr(self, name), "a positive int")
        if self.bridge_layers < 0:
            raise _err("bridge_layers", self.bridge_layers, "a non-negative int")
        if not 0.0 < self.gate_init <= 1.0:
            raise _err("gate_init", self.gate_init, "a float in (0, 1] (the evaluation gate at init)")
        for name in ("gate_lr_mult", "coordinator_lr_mult"):
            if not getattr(self, name) > 0:
                raise _err(name, getattr(self, name), "a positive number")
        if self.ib_warmup_steps < 0:
            raise _err("ib_warmup_steps", self.ib_warmup_steps, ">= 0 (>= 1: steps, < 1: fraction of the run)")
        if not isinstance(self.keep_dead_layers, bool):
            raise _err("keep_dead_layers", self.keep_dead_layers, "a bool")
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
            if isinstance(pat, str) and not pat.strip():
                raise _err("targets", pat, "a non-empty regex (an empty one matches every linear layer)")
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
    def from_dict(cls, data: dict[str, Any]) -> StructLoRAConfig:
        """From ``to_dict`` output; a save older than the trainability fixes (``gate_init_open``) keeps its operator."""
        if "gate_init_open" in data:
            data = {**LEGACY_BEHAVIOUR, **{k: v for k, v in data.items() if k != "gate_init_open"}}
        known = {f.name for f in dataclasses.fields(cls)}
        if data.get("extra") == {}:  # written by versions that had an (unused) `extra` field
            data = {k: v for k, v in data.items() if k != "extra"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"StructLoRAConfig: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


def _md_default(value: Any) -> str:
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value and (abs(value) < 1e-2 or abs(value) >= 1e4):
        return f"{value:g}"
    return "none" if value is None else repr(value) if isinstance(value, float) else str(value)


def knob_table() -> str:
    """The markdown table of every field (default and meaning, from the field's metadata): docs/structlora.md's
    "Config" table is this text (``python -m recipes.docs`` writes it; tests/structlora/test_knob_table.py)."""
    rows = ["| field | default | meaning |", "|---|---|---|"]
    for f in fields(StructLoRAConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        meaning = f.metadata["help"].replace("|", "\\|")
        rows.append(f"| `{f.name}` | {_md_default(default)} | {meaning} |")
    return "\n".join(rows) + "\n"
