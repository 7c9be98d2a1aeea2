"""Adapter budget of the real 7B architectures, on the meta device (no weights, no download).

For LLaVA-1.5-7B and LLaVA-NeXT (llava-v1.6-vicuna-7b): how many linears StructLoRA adapts (both
towers; the vision layers above ``vision_feature_layer`` never reach the LM and are left out, for
every method), its trainable parameters (factors + IB gates + coordinator) against PEFT LoRA on the same
targets (the `--method lora` baseline, built the way training builds it), and the joint graph's
edges. The configs are the published llava-hf config.json values, written out below.

    python benchmarks/arch_meta.py [--rank 8] [--record]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_CLIP_L336 = {
    "model_type": "clip_vision_model",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "projection_dim": 768,
    "vocab_size": 32000,
}
_VICUNA_7B = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-05,
    "vocab_size": 32064,
    "pad_token_id": 0,
}
# config.json of the public checkpoints (architecture fields; dtype/version fields left out)
PUBLISHED: dict[str, dict[str, Any]] = {
    "llava-hf/llava-1.5-7b-hf": {
        "model_type": "llava",
        "architectures": ["LlavaForConditionalGeneration"],
        "image_token_index": 32000,
        "projector_hidden_act": "gelu",
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "text_config": _VICUNA_7B,
        "vision_config": _CLIP_L336,
    },
    "llava-hf/llava-v1.6-vicuna-7b-hf": {
        "model_type": "llava_next",
        "architectures": ["LlavaNextForConditionalGeneration"],
        "image_token_index": 32000,
        "projector_hidden_act": "gelu",
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "use_image_newline_parameter": True,
        "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
        "text_config": _VICUNA_7B,
        "vision_config": _CLIP_L336,
    },
}


def published_config(hub_id: str):
    """transformers config of a public checkpoint, from the values above."""
    from transformers import AutoConfig

    raw = dict(PUBLISHED[hub_id])
    raw.pop("architectures")
    return AutoConfig.for_model(**raw)


def meta_model(config) -> torch.nn.Module:
    from llava_structlora.modeling import base_model_class

    with torch.device("meta"):
        return base_model_class(config)(config)


def _trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def adapter_budget(hub_id: str, rank: int = 8, coordinator: str = "coupling") -> dict[str, Any]:
    """Targets, trainable parameters of StructLoRA (with `coordinator`) vs LoRA, and graph edges of one architecture."""
    from peft import get_peft_model

    from llava_structlora.structlora import StructLoRAConfig, apply_structlora, get_controller
    from llava_structlora.train.config import ModelArguments
    from llava_structlora.train.methods import peft_config

    cfg = published_config(hub_id)
    model = apply_structlora(meta_model(cfg), StructLoRAConfig(r=rank, alpha=2.0 * rank, coordinator=coordinator))
    ctrl = get_controller(model)
    factors = sum(layer.lora_A.numel() + layer.lora_B.numel() for layer in ctrl.layers)
    gates = sum(p.numel() for layer in ctrl.layers if layer.gate is not None for p in layer.gate.parameters())
    coord = sum(p.numel() for p in ctrl.parameters())
    margs = ModelArguments(method="lora", lora_r=rank, lora_alpha=2.0 * rank)
    base = meta_model(cfg)
    lora = get_peft_model(base, peft_config(margs, 0, base))  # as train.methods.build_model does
    lora_targets = sorted(
        n.removeprefix("base_model.model.")
        for n, m in lora.named_modules()
        if hasattr(m, "lora_A") and "default" in m.lora_A
    )
    towers = {t: sum(1 for n in ctrl.nodes if n.tower == t) for t in ("vision", "language", "other")}
    return {
        "hub_id": hub_id,
        "model_class": type(model).__name__,
        "rank": rank,
        "coordinator": coordinator,
        "base_params": sum(
            p.numel() for n, p in model.named_parameters() if "lora_" not in n and not n.startswith("structlora.")
        ),
        "targets": len(ctrl.layers),
        "targets_by_tower": towers,
        "same_targets_as_lora": lora_targets == sorted(n.name for n in ctrl.nodes),
        "lora_trainable": _trainable(lora),
        "structlora_factors": factors,
        "structlora_gates": gates,
        "structlora_coordinator": coord,
        "structlora_trainable": _trainable(model),
        "coordinator_over_lora": coord / _trainable(lora),
        "structlora_over_lora": _trainable(model) / _trainable(lora),
        "graph_edges": ctrl.graph.kinds(),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| architecture | class | coordinator | adapted linears (vision + LM) | LoRA trainable | StructLoRA trainable "
        "(factors + gates + coordinator) | coordinator / LoRA | StructLoRA / LoRA | graph edges |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    lines = [head]
    for r in rows:
        t, e = r["targets_by_tower"], r["graph_edges"]
        lines.append(
            f"| {r['hub_id']} | {r['model_class']} | {r['coordinator']} | "
            f"{r['targets']} ({t['vision']} + {t['language']}) | "
            f"{r['lora_trainable']:,} | {r['structlora_trainable']:,} ({r['structlora_factors']:,} + "
            f"{r['structlora_gates']:,} + {r['structlora_coordinator']:,}) | "
            f"{r['coordinator_over_lora']:.4%} | {r['structlora_over_lora']:.4f}x | "
            + ", ".join(f"{k} {v}" for k, v in e.items())
            + " |"
        )
    lines.append("")
    lines.append(
        f"q/v targets (the last CLIP layer, above vision_feature_layer=-2, is not adapted), "
        f"r={rows[0]['rank']}, alpha=2r, StructLoRA defaults (IB hard-concrete gates, hybrid graph) "
        "with the shipped coordinator (coupling: no trained parameters) and the paper's (gnn: a 1-layer GAT); "
        "built on the meta device from the published config.json values "
        "(benchmarks/arch_meta.py). Parameter counts only: no timing, no weights."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--record", action="store_true", help="write docs/results/arch_meta_7b.json + RESULTS.md")
    args = ap.parse_args(argv)
    rows = [adapter_budget(hub, args.rank, c) for hub in PUBLISHED for c in ("coupling", "gnn")]
    table = markdown(rows)
    print(table)
    if args.record:
        from recipes.results import record_result

        record_result(
            "arch_meta_7b",
            "7B architectures on the meta device: adapted targets and parameter budget (LLaVA-1.5, LLaVA-NeXT)",
            {"rows": rows},
            table,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
