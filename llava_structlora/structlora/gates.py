"""Stage 1 of StructLoRA: per-direction gates (the IB filter, paper eq. 2-3 and App. E.2).

Gates are data-independent: one value per rank-one direction of a layer, sampled once per model
forward in training and deterministic in eval, which is what makes merging exact (docs/design.md §1).
All math works on parameters stacked over layers, shape ``(N, r)``, so the coordinator samples
every layer's gates in a handful of ops; a single layer is the ``N = 1`` case.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .config import StructLoRAConfig

_EPS = 1e-6


class BaseGate(nn.Module):
    """A gate owns its parameters (or masks); ``sample``/``evaluate``/``kl`` take them stacked."""

    param_names: tuple[str, ...] = ()
    has_kl: bool = True

    def stacked_inputs(self) -> dict[str, Tensor]:
        """This gate's parameters by name (what ``sample``/``evaluate``/``kl`` take, for one layer)."""
        return {n: getattr(self, n) for n in self.param_names}

    @classmethod
    def stack(cls, gates: Sequence[BaseGate]) -> dict[str, Tensor]:
        """The parameters of several layers' gates, stacked ``(N, r)`` per name (one call for all layers)."""
        inputs = [g.stacked_inputs() for g in gates]
        return {n: torch.stack([p[n] for p in inputs]) for n in cls.param_names}

    @staticmethod
    def sample(p: dict[str, Tensor], cfg: StructLoRAConfig, tau: Tensor) -> Tensor:
        raise NotImplementedError

    @classmethod
    def train_value(cls, p: dict[str, Tensor], cfg: StructLoRAConfig, tau: Tensor) -> Tensor:
        """The training-time gate: a sample (``gate_noise=sample``) or the eval gate (``none``)."""
        return cls.sample(p, cfg, tau) if cfg.gate_noise == "sample" else cls.evaluate(p, cfg)

    @staticmethod
    def evaluate(p: dict[str, Tensor], cfg: StructLoRAConfig) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def kl(p: dict[str, Tensor], cfg: StructLoRAConfig) -> Tensor:
        """Per-layer compression term, shape ``(N,)``."""
        raise NotImplementedError


class HardConcreteGate(BaseGate):
    """Stretched binary concrete (Louizos et al. 2018); compression = expected open gates (L0)."""

    param_names = ("log_alpha",)
    GAMMA, ZETA = -0.1, 1.1
    OPEN_MARGIN = 0.05  # gate_init=1: the unclamped eval gate starts at 1.05, safely inside the clamp at 1

    def __init__(self, r: int, cfg: StructLoRAConfig, device=None) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.full((r,), self.init_log_alpha(cfg.gate_init), device=device))

    @classmethod
    def init_log_alpha(cls, gate_init: float) -> float:
        """log_alpha whose eval gate ``clamp(sigmoid(la) (zeta - gamma) + gamma, 0, 1)`` is ``gate_init``.

        For 1 the clamp makes any la >= log(11) = 2.398 exact; we take the value whose unclamped gate is
        1 + OPEN_MARGIN (la = 3.135), so rounding never leaves an "open" gate at 0.9999.
        """
        target = 1.0 + cls.OPEN_MARGIN if gate_init >= 1.0 else gate_init
        q = (target - cls.GAMMA) / (cls.ZETA - cls.GAMMA)
        return math.log(q / (1 - q))

    @staticmethod
    def sample(p, cfg, tau):
        la = p["log_alpha"]
        u = torch.rand_like(la).clamp(_EPS, 1 - _EPS)
        s = torch.sigmoid((u.log() - (-u).log1p() + la) / cfg.hard_concrete_temperature)
        g = HardConcreteGate
        return (s * (g.ZETA - g.GAMMA) + g.GAMMA).clamp(0.0, 1.0)

    @staticmethod
    def evaluate(p, cfg):
        g = HardConcreteGate
        return (torch.sigmoid(p["log_alpha"]) * (g.ZETA - g.GAMMA) + g.GAMMA).clamp(0.0, 1.0)

    @staticmethod
    def kl(p, cfg):
        g = HardConcreteGate
        shift = cfg.hard_concrete_temperature * math.log(-g.GAMMA / g.ZETA)
        return torch.sigmoid(p["log_alpha"] - shift).sum(-1)


class GaussianGate(BaseGate):
    """Reparameterized Gaussian gate; KL to N(prior_mean, prior_std^2) (the paper's L2-type penalty)."""

    param_names = ("mu", "log_sigma")

    def __init__(self, r: int, cfg: StructLoRAConfig, device=None) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.full((r,), float(cfg.gate_init), device=device))  # eval gate = mu
        self.log_sigma = nn.Parameter(torch.full((r,), math.log(cfg.gaussian_init_std), device=device))

    @staticmethod
    def sample(p, cfg, tau):
        return p["mu"] + p["log_sigma"].exp() * torch.randn_like(p["mu"])

    @staticmethod
    def evaluate(p, cfg):
        return p["mu"]

    @staticmethod
    def kl(p, cfg):
        m0, s0 = cfg.gaussian_prior_mean, cfg.gaussian_prior_std
        var = (2 * p["log_sigma"]).exp()
        kl = math.log(s0) - p["log_sigma"] + (var + (p["mu"] - m0) ** 2) / (2 * s0**2) - 0.5
        return kl.sum(-1)


class GumbelGate(BaseGate):
    """Relaxed Bernoulli (binary Gumbel-softmax) with straight-through hard selection; KL to Bernoulli(prior_p)."""

    param_names = ("logit",)
    MAX_OPEN = 0.95  # P(open) of a gate_init=1 gate: eval gate 1, training samples open 95 % of the time

    def __init__(self, r: int, cfg: StructLoRAConfig, device=None) -> None:
        super().__init__()
        self.logit = nn.Parameter(torch.full((r,), self.init_logit(cfg.gate_init), device=device))

    @classmethod
    def init_logit(cls, gate_init: float) -> float:
        """The eval gate is the threshold ``sigmoid(logit) > 0.5``, so it can only be 0 or 1. "Gate 1 at init"
        means eval gate exactly 1 (exact LoRA merge) with training P(open) = min(gate_init, MAX_OPEN): a
        finite logit (log 19 = 2.94), so the straight-through gradient and the KL can still move it."""
        p = min(gate_init, cls.MAX_OPEN)
        return math.log(p / (1 - p))

    @staticmethod
    def sample(p, cfg, tau):
        lg = p["logit"]
        u = torch.rand_like(lg).clamp(_EPS, 1 - _EPS)
        soft = torch.sigmoid((lg + u.log() - (-u).log1p()) / tau)
        hard = (soft > 0.5).to(soft.dtype)
        return hard + soft - soft.detach()

    @staticmethod
    def evaluate(p, cfg):
        return (torch.sigmoid(p["logit"]) > 0.5).to(p["logit"].dtype)

    @classmethod
    def train_value(cls, p, cfg, tau):
        """gate_noise=none: the hard eval gate, with the straight-through gradient of sigmoid(logit / tau)."""
        if cfg.gate_noise == "sample":
            return cls.sample(p, cfg, tau)
        soft = torch.sigmoid(p["logit"] / tau)
        return cls.evaluate(p, cfg) + soft - soft.detach()

    @staticmethod
    def kl(p, cfg):
        q = torch.sigmoid(p["logit"]).clamp(_EPS, 1 - _EPS)
        pr = cfg.gumbel_prior_p
        return (q * (q / pr).log() + (1 - q) * ((1 - q) / (1 - pr)).log()).sum(-1)


class MaskGate(BaseGate):
    """Fixed 0/1 mask (filter=topk_norm / random): no parameters, no KL; the mask is a buffer."""

    param_names = ("mask",)
    has_kl = False

    def __init__(self, r: int, cfg: StructLoRAConfig, device=None, mask: Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones(r, device=device) if mask is None else mask.to(device))

    @staticmethod
    def sample(p, cfg, tau):
        return p["mask"]

    @staticmethod
    def evaluate(p, cfg):
        return p["mask"]

    @staticmethod
    def kl(p, cfg):
        return p["mask"].new_zeros(p["mask"].shape[:-1])


class LayerScaleGate(BaseGate):
    """One learned scalar per layer (``filter=layer_scale``), no KL, init 1 (an untrained adapter is LoRA).

    Not in the paper: the control for the coordinator. The coordinator can change each layer's update
    scale; this gate can do only that, so a coordinator gain that a per-layer scalar also gets is a scale
    effect, not coordination. It trains in the gates' optimizer group (``gate_lr_mult``).
    """

    param_names = ("scale",)
    has_kl = False

    def __init__(self, r: int, cfg: StructLoRAConfig, device=None) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, device=device))

    @staticmethod
    def sample(p, cfg, tau):
        return LayerScaleGate.evaluate(p, cfg)

    @staticmethod
    def evaluate(p, cfg):
        s = p["scale"]
        return s.expand(*s.shape[:-1], cfg.r)

    @staticmethod
    def kl(p, cfg):
        return p["scale"].new_zeros(p["scale"].shape[:-1])


GATE_CLASSES: dict[str, type[BaseGate]] = {
    "hard_concrete": HardConcreteGate,
    "gaussian": GaussianGate,
    "gumbel": GumbelGate,
}


def build_gate(cfg: StructLoRAConfig, device=None, generator_seed: int | None = None) -> BaseGate | None:
    """The gate of one layer for ``cfg.filter``; ``None`` for filter="none" (all gates = 1)."""
    if cfg.filter == "none":
        return None
    if cfg.filter == "ib":
        return GATE_CLASSES[cfg.gate](cfg.r, cfg, device=device)
    if cfg.filter == "layer_scale":
        return LayerScaleGate(cfg.r, cfg, device=device)
    mask = None
    if cfg.filter == "random":
        gen = torch.Generator().manual_seed(int(generator_seed or 0))
        keep = torch.randperm(cfg.r, generator=gen)[: cfg.k_keep]
        mask = torch.zeros(cfg.r)
        mask[keep] = 1.0
    # topk_norm starts all-open: with B = 0 all norms tie, and a closed direction would never train.
    return MaskGate(cfg.r, cfg, device=device, mask=mask)


def topk_mask(norms: Tensor, k: int) -> Tensor:
    """0/1 mask of the k largest per-direction norms (ties broken by index, so every rank agrees)."""
    order = torch.sort(norms, descending=True, stable=True).indices
    mask = torch.zeros_like(norms)
    mask[order[:k]] = 1.0
    return mask


def gumbel_temperature(cfg: StructLoRAConfig, step: int, max_steps: int) -> float:
    """Exponential annealing from gumbel_tau_start to gumbel_tau_end over training."""
    frac = min(max(step / max(max_steps, 1), 0.0), 1.0)
    return cfg.gumbel_tau_start * (cfg.gumbel_tau_end / cfg.gumbel_tau_start) ** frac
