"""Optimizer parameter groups for StructLoRA: factors, gates and coordinator at their own lr.

Gate parameters are logits (hard concrete / gumbel) or gate values (gaussian mu): closing a direction
moves a logit by about 5 units, while Adam moves any parameter by about lr per step. At the LoRA lr
(2e-4, 250 steps) a gate can travel about 0.03, so no direction could ever open or close; hence
``gate_lr_mult``. Weight decay would pull logits toward 0 (a half-open gate), which is a prior the IB
term already states explicitly, so gates and the coordinator get none.
"""

from __future__ import annotations

from typing import Any, Optional

from torch import nn

from .config import StructLoRAConfig
from .model import CONTROLLER_NAME, get_controller


def structlora_param_names(model: nn.Module) -> dict[str, str]:
    """``{parameter name: "factors" | "gates" | "coordinator"}`` for every trainable StructLoRA parameter."""
    ctrl = get_controller(model)
    gate_ids = {id(getattr(l.gate, n)) for l in ctrl.layers if l.gate is not None for n in l.gate.param_names}
    factor_ids = {id(t) for l in ctrl.layers for t in (l.lora_A, l.lora_B)}
    coord_ids = {id(p) for p in ctrl.parameters()}
    out = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in gate_ids:
            out[name] = "gates"
        elif id(p) in factor_ids:
            out[name] = "factors"
        elif id(p) in coord_ids or name.startswith(f"{CONTROLLER_NAME}."):
            out[name] = "coordinator"
    return out


def structlora_param_groups(
    model: nn.Module, base_lr: float, weight_decay: float, config: Optional[StructLoRAConfig] = None
) -> list[dict[str, Any]]:
    """AdamW groups for the StructLoRA parameters of ``model`` (other trainable parameters are not included).

    factors: ``base_lr`` with ``weight_decay``; gates: ``base_lr * gate_lr_mult``, no decay; coordinator:
    ``base_lr * coordinator_lr_mult``, no decay. Empty groups are left out. Each group carries a ``name``.

    Args:
        config: the run's config (the training loop hands down the one it built the model with); None: the
            config ``apply_structlora`` was given.
    """
    cfg = config if config is not None else get_controller(model).cfg
    kinds = structlora_param_names(model)
    params = dict(model.named_parameters())
    settings = {
        "factors": (base_lr, weight_decay),
        "gates": (base_lr * cfg.gate_lr_mult, 0.0),
        "coordinator": (base_lr * cfg.coordinator_lr_mult, 0.0),
    }
    groups = []
    for kind, (lr, wd) in settings.items():
        ps = [params[n] for n, k in kinds.items() if k == kind]
        if ps:
            groups.append({"params": ps, "lr": lr, "weight_decay": wd, "name": f"structlora_{kind}"})
    return groups
