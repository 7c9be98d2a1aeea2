"""Control for the coordinator: the CosAdj that StructLoRA's *initial* smoothing gives by itself.

Smoothing mixes each layer's update with its neighbours', so adjacent updates get a positive cosine
even when nothing was learned. Here every adapter gets an independent random ``B`` (the factors of
unrelated, near-orthogonal updates; LoRA's CosAdj is ~0 on them), the coordinator is left at its
initialisation, and the eval-mode CosAdj over the depth chain is measured with StructLoRA's own
diagnostics. A trained StructLoRA whose CosAdj is no higher than this number has learned no
coordination beyond the operator's mechanics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .stats import summarize


def mechanical_cos_adj(base_dir: Path, seeds: Sequence[int], **overrides: Any) -> dict[str, Any]:
    """CosAdj of random per-layer updates after the initial smoothing, per seed (+ coordinator=none)."""
    from transformers import LlavaForConditionalGeneration

    from llava_structlora.structlora import StructLoRAConfig, apply_structlora, structlora_diagnostics
    from llava_structlora.structlora.layer import StructLoRALinear

    out: dict[str, Any] = {}
    for label, extra in (("smoothed", {}), ("coordinator=none", {"coordinator": "none"})):
        vals = []
        for seed in seeds:
            torch.manual_seed(seed)
            model = LlavaForConditionalGeneration.from_pretrained(str(base_dir), dtype=torch.float32)
            apply_structlora(model, StructLoRAConfig(seed=seed, **{**overrides, **extra}))
            gen = torch.Generator().manual_seed(10_000 + seed)
            with torch.no_grad():
                for m in model.modules():
                    if isinstance(m, StructLoRALinear):
                        m.lora_B.copy_(0.01 * torch.randn(m.lora_B.shape, generator=gen))
            model.eval()
            vals.append(float(structlora_diagnostics(model)["cos_adj"]))
        summ = summarize(vals)  # NaN (no adjacent pair, e.g. a 1-layer smoke base) is left out
        out[label] = {"per_seed": dict(zip(seeds, vals)), "mean": summ.mean, "std": summ.std, "n": summ.n}
    return out


def mechanical_markdown(mech: dict[str, Any], trained: dict[str, float]) -> str:
    s, n = mech["smoothed"], mech["coordinator=none"]
    line = (
        f"Control (mechanical CosAdj): random independent updates after StructLoRA's *initial* smoothing have "
        f"CosAdj {s['mean']:.3f} ± {s['std']:.3f} (coordinator=none: {n['mean']:.3f} ± {n['std']:.3f}; "
        f"{len(s['per_seed'])} seeds)."
    )
    if trained:
        line += " Trained rows (merged updates): " + ", ".join(f"{k} {v:.3f}" for k, v in trained.items()) + "."
    return line
