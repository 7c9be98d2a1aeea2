"""Drift energy and adjacent-layer cosine of the *final* update of any method (LoRA, DoRA, AdaLoRA, StructLoRA).

StructLoRA's own diagnostics are computed from its factors, but DoRA and AdaLoRA updates are not
``B A`` products, so for a fair per-method comparison (paper App. C) we measure every method the
same way: merge the exported stock-PEFT adapter into the base and take ``dW_l = W_merged - W_base``
for every adapted layer. The tiny base makes these matrices small (<= 192 x 192).

Edges: the depth chain l <-> l+1 within each of {vision q, vision v, LM q, LM v} (docs/design.md's
"adjacent" edges). ``drift_energy = sum ||dW_l - dW_{l+1}||_F^2``, ``cos_adj`` = mean cosine.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

_LAYER = re.compile(r"(?P<tower>vision_tower|language_model)\..*layers\.(?P<idx>\d+)\.self_attn\.(?P<proj>\w+)$")


def update_matrices(base_dir: Path, adapter_dir: Path) -> dict[str, torch.Tensor]:
    """module name -> dW (float32) for every module the adapter changed."""
    from peft import PeftModel
    from transformers import LlavaForConditionalGeneration

    base = LlavaForConditionalGeneration.from_pretrained(str(base_dir), dtype=torch.float32)
    before = {
        n: m.weight.detach().clone()
        for n, m in base.named_modules()
        if _LAYER.search(n) and isinstance(m, torch.nn.Linear)
    }
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    after = dict(merged.named_modules())
    out = {}
    for name, w0 in before.items():
        dw = after[name].weight.detach().float() - w0.float()
        if dw.abs().max() > 0:
            out[name] = dw
    return out


def chain_stats(updates: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Drift energy / CosAdj over adjacent layers of the same tower and projection."""
    groups: dict[tuple[str, str], list[tuple[int, torch.Tensor]]] = {}
    for name, dw in updates.items():
        m = _LAYER.search(name)
        if m:
            groups.setdefault((m["tower"], m["proj"]), []).append((int(m["idx"]), dw))
    energy, cosines, per_group = 0.0, [], {}
    for (tower, proj), items in sorted(groups.items()):
        items.sort(key=lambda t: t[0])
        g_cos = []
        for (i, a), (j, b) in zip(items, items[1:]):
            if j != i + 1 or a.shape != b.shape:
                continue
            energy += float((a - b).pow(2).sum())
            g_cos.append(float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-24)))
        cosines += g_cos
        per_group[f"{tower}.{proj}"] = sum(g_cos) / len(g_cos) if g_cos else None
    norms = [float(dw.norm()) for dw in updates.values()]
    return {
        "drift_energy": energy,
        "cos_adj": sum(cosines) / len(cosines) if cosines else float("nan"),
        "cos_adj_per_group": per_group,
        "n_updates": len(updates),
        "mean_update_norm": sum(norms) / len(norms) if norms else 0.0,
        "drift_energy_normalized": energy / max(sum(n * n for n in norms), 1e-24),
    }


def adapter_stats(base_dir: Path, adapter_dir: Path) -> dict[str, Any]:
    return chain_stats(update_matrices(base_dir, adapter_dir))
