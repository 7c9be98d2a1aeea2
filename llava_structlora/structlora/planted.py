"""Planted problems: small linear stacks where the right answer is known.

(a) *Filter*: each layer's true update uses ``k`` of the adapter's ``r`` directions; the other ``r - k``
    directions see only noise. The adapter's ``A`` is frozen to those directions, so "direction k"
    means the same thing before and after training, and the question is only which gates the IB
    filter keeps open.
(b) *Coordinator*: the true per-layer updates vary smoothly with depth and every layer sees little
    data; the question is whether the coordinator's updates generalise better than per-layer LoRA.

The schedule mirrors the default recipe (AdamW, lr 2e-4, 6 % warm-up, cosine, 250 steps), because how
far a gate can travel is ``lr x steps`` in its own units, whatever the problem. Everything runs on CPU
in seconds and is deterministic for a seed. Used by tests/structlora/test_planted.py and
experiments/planted.py (which records the numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from .config import StructLoRAConfig
from .model import (
    apply_structlora,
    get_controller,
    merge_structlora,
    structlora_moved,
    structlora_on_step,
    structlora_regularizer,
)
from .optim import structlora_param_groups

TARGETS = [r"layers\.\d+\.proj$"]


class _Block(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_in, d_out, bias=False)


class LinearStack(nn.Module):
    """``n_layers`` same-shape linear layers ``layers.{l}.proj``, each its own regression (depth = index)."""

    def __init__(self, n_layers: int, d: int, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.layers = nn.ModuleList(_Block(d, d) for _ in range(n_layers))

    def forward(self, x: Tensor) -> Tensor:  # x: (batch, n_layers, d)
        return torch.stack([blk.proj(x[:, i]) for i, blk in enumerate(self.layers)], 1)


@dataclass
class Schedule:
    """The default recipe's optimizer schedule (configs/coco.yaml)."""

    steps: int = 250
    lr: float = 2e-4
    weight_decay: float = 0.01
    warmup: float = 0.06
    batch: int = 16
    old_optimizer: bool = False  # before the trainability fixes: one AdamW group, gates weight-decayed at the LoRA lr


def _optimizer(model: nn.Module, sched: Schedule) -> torch.optim.Optimizer:
    if sched.old_optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW([{"params": params, "weight_decay": sched.weight_decay}], lr=sched.lr)
    return torch.optim.AdamW(structlora_param_groups(model, sched.lr, sched.weight_decay), lr=sched.lr)


def _lr_factor(step: int, sched: Schedule) -> float:
    warm = max(1, math.ceil(sched.warmup * sched.steps))
    if step < warm:
        return step / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, sched.steps - warm)))


def zero_base_stack(n_layers: int, d: int, cfg: StructLoRAConfig, seed: int) -> nn.Module:
    """A StructLoRA-adapted LinearStack whose base weights are 0, so the merged model is the update itself."""
    model = apply_structlora(LinearStack(n_layers, d, seed), replace(cfg, targets=TARGETS, seed=seed))
    with torch.no_grad():
        for layer in get_controller(model).layers:
            layer.base_layer.weight.zero_()
    return model


def frozen_a_stack(A: Tensor, cfg: StructLoRAConfig, seed: int) -> nn.Module:
    """A zero-base stack whose LoRA A factors are frozen to the planted directions ``A`` (L, r, d): only B and
    the gates train, so each gate is tied to one known (true or nuisance) direction."""
    model = zero_base_stack(A.shape[0], A.shape[2], replace(cfg, r=A.shape[1], coordinator="none"), seed)
    with torch.no_grad():
        for a, layer in zip(A, get_controller(model).layers, strict=True):
            layer.lora_A.copy_(a)
            layer.lora_A.requires_grad_(False)
    return model


def train(model: nn.Module, x: Tensor, y: Tensor, sched: Schedule, seed: int) -> list[float]:
    """AdamW over mini-batches of (x, y) with the recipe's warm-up + cosine; returns the task losses."""
    opt = _optimizer(model, sched)
    base = [g["lr"] for g in opt.param_groups]
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    losses = []
    model.train()
    for step in range(sched.steps):
        for grp, lr in zip(opt.param_groups, base):
            grp["lr"] = lr * _lr_factor(step, sched)
        structlora_on_step(model, step, sched.steps)
        idx = torch.randint(0, x.shape[0], (min(sched.batch, x.shape[0]),), generator=g)
        task = ((model(x[idx]) - y[idx]) ** 2).sum(-1).mean()
        (task + structlora_regularizer(model)).backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(task.detach()))
    model.eval()
    return losses


# ----------------------------------------------------------------------------- (a) filter
@dataclass
class FilterProblem:
    n_layers: int = 4
    d: int = 16
    r: int = 8
    k: int = 2  # true directions per layer (the first k of A's rows)
    signal: float = 0.3  # singular value of each true direction (what 250 steps at lr 2e-4 can reach)
    noise: float = 0.1  # std of the target noise
    n_train: int = 64
    a_norm: float = 2.0  # norm of A's rows (the planted directions)


def filter_data(p: FilterProblem, seed: int) -> dict[str, Tensor]:
    """Orthonormal input directions per layer (rows of A), true update on the first k, targets y = dW* x + eps."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.linalg.qr(torch.randn(p.n_layers, p.d, p.d, generator=g))[0][:, :, : p.r].transpose(1, 2)
    u = torch.linalg.qr(torch.randn(p.n_layers, p.d, p.k, generator=g))[0]
    true = p.signal * u @ dirs[:, : p.k]  # (L, d, d), rank k
    x = torch.randn(p.n_train, p.n_layers, p.d, generator=g)
    y = torch.einsum("lod,nld->nlo", true, x) + p.noise * torch.randn(p.n_train, p.n_layers, p.d, generator=g)
    return {"A": dirs * p.a_norm, "true": true, "x": x, "y": y}


def run_filter(p: FilterProblem, cfg: StructLoRAConfig, sched: Schedule, seed: int) -> dict[str, Any]:
    """Train a gated adapter (frozen A = the planted directions, base W = 0) and report the gates."""
    data = filter_data(p, seed)
    cfg = replace(cfg, filter="ib")
    model = frozen_a_stack(data["A"], cfg, seed)
    ctrl = get_controller(model)

    def params() -> torch.Tensor:
        return torch.stack([getattr(l.gate, n).detach().clone() for l in ctrl.layers for n in l.gate.param_names[:1]])

    before, g0 = params(), ctrl.gates(False).detach().clone()
    losses = train(model, data["x"], data["y"], sched, seed)
    after, g1 = params(), ctrl.gates(False).detach()
    return {
        "eval_gate_init": g0.tolist(),
        "eval_gate_final": g1.tolist(),
        "true_kept": float((g1[:, : p.k] >= 0.5).float().mean()),
        "nuisance_closed": float((g1[:, p.k :] < 0.5).float().mean()),
        "nuisance_exactly_closed": float((g1[:, p.k :] <= cfg.open_threshold).float().mean()),
        "median_abs_param_delta": float((after - before).abs().median()),
        "median_abs_eval_gate_delta": float((g1 - g0).abs().median()),
        "loss_first": losses[0],
        "loss_last": sum(losses[-10:]) / 10,
    }


# ----------------------------------------------------------------------------- (b) coordinator
@dataclass
class CoordinatorProblem:
    n_layers: int = 6
    d: int = 16
    r: int = 4
    signal: float = 1.0
    noise: float = 0.5
    n_train: int = 32  # per layer: 2 d samples for a d x d update, with noise
    n_test: int = 512


def coordinator_data(p: CoordinatorProblem, seed: int) -> dict[str, Tensor]:
    """dW*_l = U(t) diag(s) V(t)^T with U, V rotating smoothly with depth t = l / (L - 1)."""
    g = torch.Generator().manual_seed(seed)
    u0, u1, v0, v1 = (torch.linalg.qr(torch.randn(p.d, p.r, generator=g))[0] for _ in range(4))
    t = torch.linspace(0, 1, p.n_layers)[:, None, None]
    u = torch.linalg.qr(math.cos(0.5) * u0 + (t * u1))[0]
    v = torch.linalg.qr(math.cos(0.5) * v0 + (t * v1))[0]
    true = p.signal * u @ v.transpose(1, 2)  # (L, d, d), rank r
    x = torch.randn(p.n_train + p.n_test, p.n_layers, p.d, generator=g)
    y = torch.einsum("lod,nld->nlo", true, x) + p.noise * torch.randn(x.shape, generator=g)
    n = p.n_train
    return {"true": true, "x": x[:n], "y": y[:n], "x_test": x[n:], "y_test": y[n:]}


def run_coordinator(p: CoordinatorProblem, cfg: StructLoRAConfig, sched: Schedule, seed: int) -> dict[str, Any]:
    """Train (base W = 0) and report the held-out error of the merged update, relative to ||dW*||."""
    data = coordinator_data(p, seed)
    model = zero_base_stack(p.n_layers, p.d, replace(cfg, r=p.r, alpha=float(p.r)), seed)
    losses = train(model, data["x"], data["y"], sched, seed)
    smoothing = structlora_moved(model)["smoothing"]  # the coordinator's eta * a_lj per edge, init and end
    merged = merge_structlora(model)
    learned = torch.stack([blk.proj.weight.detach() for blk in merged.layers])
    err = ((learned - data["true"]).norm(dim=(1, 2)) / data["true"].norm(dim=(1, 2))).mean()
    with torch.no_grad():
        test_mse = float(((merged(data["x_test"]) - data["y_test"]) ** 2).sum(-1).mean())
    coef = {
        k: None if smoothing is None else sum(smoothing[k].values()) / len(smoothing[k])
        for k in ("coef_init", "coef_final")
    }
    return {
        "rel_update_error": float(err),
        "test_mse": test_mse,
        "train_loss_last": sum(losses[-10:]) / 10,
        "smoothing_coef_mean": coef,  # eta * a_lj, mean over smoothing edges (None without smoothing)
    }
