"""The StructLoRA linear layer.

Implements the per-layer part of "Not All Directions Matter: Towards Structured and Task-Aware
Low-Rank Model Adaptation" (StructLoRA, ACL 2026, arXiv 2603.14228), in the factored form of
docs/design.md §1 eq. (A):

    dW_l = sum_t  (alpha / r) * B_t diag(c_t) A_t,     t in {l} + smoothing neighbours of l

where ``c_l = (1 - eta * deg_l) * g_l * s_l`` and ``c_j = eta * a_lj * g_j * s_j`` (gates ``g``,
GNN gate modulation ``s``, learned edge weights ``a``). The coefficients of every layer are
computed once per model forward by the controller (``controller.py``) and handed to the layer as a
*plan*; the layer then runs ONE concatenated low-rank matmul pair over its own and its
neighbours' factors, so no ``d_out x d_in`` matrix is ever formed during training.

Without a plan (``filter="none"``, ``coordinator="none"``) the forward is PEFT's LoRA forward op
for op, so outputs are bitwise those of ``peft.tuners.lora.Linear`` with the same factors.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import StructLoRAConfig
from .gates import BaseGate, build_gate

# A plan: (term layers, coefficient per stacked direction incl. the alpha/r scale).
Plan = tuple[list["StructLoRALinear"], Tensor]


def name_seed(seed: int, name: str) -> int:
    """Per-module seed independent of module order, identical on every rank."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**31)


class StructLoRALinear(nn.Module):
    """``nn.Linear`` + gated low-rank update; the cross-layer terms come from the coordinator's plan."""

    def __init__(self, base_layer: nn.Linear, cfg: StructLoRAConfig, name: str) -> None:
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"StructLoRA target {name!r} is {type(base_layer).__name__}, expected nn.Linear")
        self.base_layer = base_layer
        self.module_name = name
        self.r = cfg.r
        self.scale = cfg.scale
        dev = base_layer.weight.device
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.lora_A = nn.Parameter(torch.empty(cfg.r, self.in_features, device=dev, dtype=torch.float32))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, cfg.r, device=dev, dtype=torch.float32))
        self.lora_dropout: nn.Module = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.gate: Optional[BaseGate] = build_gate(cfg, device=dev, generator_seed=name_seed(cfg.seed, name))
        self.reset_lora_parameters(name_seed(cfg.seed, name))
        self._plan: Optional[Plan] = None
        self._plan_fn: Optional[Callable[[StructLoRALinear], Optional[Plan]]] = None

    def reset_lora_parameters(self, seed: int) -> None:
        """PEFT's default init: A ~ kaiming_uniform(a=sqrt(5)), B = 0 (seeded per module)."""
        if self.lora_A.device.type == "meta":
            return
        gen = torch.Generator(device=self.lora_A.device).manual_seed(seed)
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5), generator=gen)
            self.lora_B.zero_()

    # PEFT-style passthroughs: some model code reads ``proj.weight`` / ``proj.bias``.
    @property
    def weight(self) -> Tensor:
        return self.base_layer.weight

    @property
    def bias(self) -> Optional[Tensor]:
        return self.base_layer.bias

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        result = self.base_layer(x, *args, **kwargs)
        plan = self._plan
        if plan is None and self._plan_fn is not None:
            plan = self._plan_fn(self)
        A = self.lora_A
        x = x.to(A.dtype)
        if plan is None:  # plain LoRA, same ops as peft.tuners.lora.Linear.forward (incl. its cast back)
            out = result + F.linear(F.linear(self.lora_dropout(x), A), self.lora_B) * self.scale
            return out.to(result.dtype)
        terms, coef = plan
        A_cat, B_cat = stacked_factors(terms)
        h = F.linear(self.lora_dropout(x), A_cat)
        update = F.linear(h * coef.to(h.dtype), B_cat)
        return result + update.to(result.dtype)

    def delta_weight(self, plan: Optional[Plan]) -> Tensor:
        """The final ``d_out x d_in`` update (merge time only; never called in training)."""
        if plan is None:
            return (self.lora_B.float() @ self.lora_A.float()) * self.scale
        terms, coef = plan
        A_cat, B_cat = stacked_factors(terms)
        return (B_cat.float() * coef.float()) @ A_cat.float()

    def extra_repr(self) -> str:
        return f"r={self.r}, scale={self.scale:g}, gate={type(self.gate).__name__ if self.gate else None}"


def stacked_factors(terms: list[StructLoRALinear]) -> tuple[Tensor, Tensor]:
    """``A_cat`` (sum r x d_in) and ``B_cat`` (d_out x sum r) of the terms of eq. (A)."""
    if len(terms) == 1:
        return terms[0].lora_A, terms[0].lora_B
    return torch.cat([t.lora_A for t in terms], 0), torch.cat([t.lora_B for t in terms], 1)
