"""How far the study's exported adapters are from their run's final StructLoRA state.

    python -m experiments.export_check [--record]

Until the fix of 2026-12-02 the coordinator's descriptors were cached under parameter version counters,
which the trainer's fused AdamW does not bump, so an export could use the descriptors from before the
last optimizer step. For the main table's StructLoRA runs (3 tasks x 8 reporting seeds) this loads the
saved final state (``structlora/``, fresh caches) and compares its per-layer update with the exported
PEFT adapter's ``B @ A``: the relative Frobenius error per layer, max over layers, per run.
"""

from __future__ import annotations

import argparse
import statistics

import torch


def run_error(run_dir, base_dir) -> float:
    """Max over layers of ||dW_adapter - dW_state||_F / ||dW_state||_F (dW_state: the saved final state)."""
    from safetensors.torch import load_file
    from transformers import LlavaForConditionalGeneration

    from llava_structlora.structlora import load_structlora
    from llava_structlora.structlora.export import layer_factors
    from llava_structlora.structlora.model import eval_plans

    model = load_structlora(
        LlavaForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32), run_dir / "structlora"
    )
    ctrl, _, plans = eval_plans(model)
    sd = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    worst = 0.0
    for i, layer in enumerate(ctrl.layers):
        B, A = layer_factors(layer, None if plans is None else plans[i])
        ref = (B @ A).float()
        key = next((k for k in sd if k.endswith(layer.module_name.removeprefix("model.") + ".lora_B.weight")), None)
        if key is None:  # the export leaves out a module whose update is exactly 0 (every direction closed)
            if float(ref.abs().max()) != 0.0:
                raise ValueError(f"{run_dir}: {layer.module_name} has an update but no exported factors")
            continue
        exported = sd[key].float() @ sd[key.replace("lora_B", "lora_A")].float()
        worst = max(worst, float((exported - ref).norm() / ref.norm().clamp_min(1e-30)))
    return worst


def main(argv: list[str] | None = None) -> int:
    from .plan import spec_for, tune_lr
    from .runner import cached, run_dir
    from .suite import FULL
    from .tables import STRUCT

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)
    errors: dict[str, dict[str, float]] = {}
    for task in FULL.tasks:
        lr = tune_lr(task, "structlora", FULL, cached).lr
        for seed in FULL.seeds:
            path = run_dir(spec_for(STRUCT, task, seed, lr), FULL)
            if not (path / "structlora").is_dir():
                raise FileNotFoundError(f"{path}: no structlora/ state ({task}, seed {seed}, lr {lr:g})")
            errors.setdefault(task, {})[str(seed)] = run_error(path, FULL.base_dir)
    allv = [v for d in errors.values() for v in d.values()]
    md = (
        "Relative Frobenius error of the exported adapter's update vs the run's saved final StructLoRA state, max over "
        "layers, main-table StructLoRA runs (GNN revision 4, trained before the descriptor fix): "
        + "; ".join(
            f"{t}: median {statistics.median(d.values()):.2e}, max {max(d.values()):.2e} (n={len(d)})"
            for t, d in errors.items()
        )
        + f". Over all {len(allv)} runs: median {statistics.median(allv):.2e}, max {max(allv):.2e}."
    )
    print(md)
    if args.record:
        from recipes.results import record_result

        record_result(
            "experiments_export_check",
            "Study exports vs their final StructLoRA state (stale-descriptor check)",
            {"errors": errors},
            md,
            command="python -m experiments.export_check --record",
            seeds=list(FULL.seeds),
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
