"""Export the final StructLoRA updates as a stock PEFT LoRA adapter (docs/design.md §2).

For each layer the final update of eq. (A) is ``sum_t B_t diag(c_t) A_t``: stacking the factors
of its terms (own + smoothing neighbours) with the coefficients folded into ``B`` gives an exact
LoRA of rank up to ``r * (1 + deg)``. Closed directions (coefficient exactly 0) are dropped,
ranks go into ``rank_pattern`` and ``alpha_pattern = rank`` (so PEFT's scaling is 1), and
``PeftModel.from_pretrained(base, out_dir)`` reproduces the merged model with no project code.
With ``max_rank`` the stack is SVD-truncated in factored form (QR of both factors, SVD of the
small core) and the relative Frobenius error is written to the README and the metadata.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from ..utils.io import atomic_save_safetensors, atomic_write_json, atomic_write_text
from .layer import stacked_factors
from .model import eval_plans

EXPORT_INFO = "structlora_export.json"


def layer_factors(layer, plan) -> tuple[Tensor, Tensor]:
    """Exact ``(B, A)`` with ``B @ A`` = the layer's final update; closed directions dropped."""
    if plan is None:
        return layer.lora_B.detach() * layer.scale, layer.lora_A.detach()
    terms, coef = plan
    A, B = stacked_factors(terms)
    keep = coef != 0
    return B.detach()[:, keep] * coef[keep], A.detach()[keep]


def compress(B: Tensor, A: Tensor, k: int) -> tuple[Tensor, Tensor, float, float]:
    """Best rank-k approximation of ``B @ A`` without forming it. Returns (B', A', discarded^2, total^2)."""
    qb, rb = torch.linalg.qr(B.double())
    qa, ra = torch.linalg.qr(A.T.double())
    u, s, vh = torch.linalg.svd(rb @ ra.T)
    root = s[:k].sqrt()
    b2 = (qb @ u[:, :k]) * root
    a2 = (root[:, None] * vh[:k]) @ qa.T
    total = float((s**2).sum())
    return b2.to(B.dtype), a2.to(A.dtype), total - float((s[:k] ** 2).sum()), total


def _readme(info: dict) -> str:
    err = info["relative_error"]
    lines = [
        "# StructLoRA adapter (stock PEFT LoRA format)",
        "",
        "Exported from a StructLoRA run (IB-gated, graph-coordinated LoRA; ACL 2026, arXiv 2603.14228).",
        "The gates, gate modulation and cross-layer smoothing are folded into plain LoRA factors:",
        "load it with `PeftModel.from_pretrained(base_model, this_dir)`; no StructLoRA code is needed.",
        "",
        f"- adapted modules: {info['num_modules']} (dropped with rank 0: {len(info['empty_modules'])})",
        f"- ranks: min {info['min_rank']}, max {info['max_rank']}, total {info['total_rank']}",
        f"- max_rank (SVD compression): {info['max_rank_limit']}",
        f"- relative Frobenius error of the compressed updates: {err:.6g} "
        f"(max per layer {info['max_layer_error']:.6g})",
        "",
        "Per-layer ranks and errors are in `structlora_export.json`.",
        "",
    ]
    return "\n".join(lines)


@torch.no_grad()
def export_peft_adapter(model: nn.Module, out_dir: str | Path, max_rank: Optional[int] = None) -> Path:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors`` (+ README.md, structlora_export.json)."""
    from peft import LoraConfig

    if max_rank is not None and (not isinstance(max_rank, int) or max_rank <= 0):
        raise ValueError(f"export_peft_adapter: max_rank={max_rank!r} must be None or a positive int")
    ctrl, _, plans = eval_plans(model)
    tensors: dict[str, Tensor] = {}
    ranks: dict[str, int] = {}
    errors: dict[str, float] = {}
    empty: list[str] = []
    disc_sum = total_sum = 0.0
    for i, layer in enumerate(ctrl.layers):
        name = layer.module_name
        B, A = layer_factors(layer, None if plans is None else plans[i])
        if max_rank is not None and A.shape[0] > max_rank:
            B, A, disc, total = compress(B, A, max_rank)
            disc_sum, total_sum = disc_sum + disc, total_sum + total
            errors[name] = math.sqrt(max(disc, 0.0) / total) if total > 0 else 0.0
        else:
            total_sum += float(((B.T.double() @ B.double()) * (A.double() @ A.T.double())).sum())
            errors[name] = 0.0
        if A.shape[0] == 0:
            empty.append(name)
            continue
        ranks[name] = int(A.shape[0])
        tensors[f"base_model.model.{name}.lora_A.weight"] = A.float().contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = B.float().contiguous()
    if not ranks:
        raise ValueError("export_peft_adapter: every direction of every layer is closed; nothing to export")
    rel = math.sqrt(max(disc_sum, 0.0) / total_sum) if total_sum > 0 else 0.0
    top = max(ranks.values())
    lora_cfg = LoraConfig(
        r=top,
        lora_alpha=top,
        lora_dropout=0.0,
        bias="none",
        target_modules=sorted(ranks),
        rank_pattern={re.escape(n): k for n, k in ranks.items()},
        alpha_pattern={re.escape(n): k for n, k in ranks.items()},
        base_model_name_or_path=getattr(getattr(model, "config", None), "_name_or_path", None) or None,
    )
    info = {
        "num_modules": len(ranks),
        "empty_modules": empty,
        "ranks": ranks,
        "layer_errors": errors,
        "relative_error": rel,
        "max_layer_error": max(errors.values(), default=0.0),
        "max_rank_limit": max_rank,
        "min_rank": min(ranks.values()),
        "max_rank": top,
        "total_rank": sum(ranks.values()),
        "structlora_config": ctrl.cfg.to_dict(),
    }
    meta = {"format": "pt", "structlora_relative_error": repr(rel), "structlora_max_rank": str(max_rank)}
    out_dir = Path(out_dir)
    # Files go into out_dir like PEFT's save_pretrained, each atomically; the config comes last so
    # an interrupted export never leaves a config that describes other weights.
    atomic_save_safetensors(tensors, out_dir / "adapter_model.safetensors", metadata=meta)
    atomic_write_json(out_dir / EXPORT_INFO, info)
    atomic_write_text(out_dir / "README.md", _readme(info))
    config = {k: sorted(v) if isinstance(v, set) else v for k, v in lora_cfg.to_dict().items()}
    atomic_write_json(out_dir / "adapter_config.json", config)
    return out_dir
