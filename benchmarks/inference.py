"""Inference cost of a merged StructLoRA model and its exactness.

    python benchmarks/inference.py [--quick] [--stacks tiny,realistic]

For each stack: apply StructLoRA, take a few optimizer steps with a large lr so that gates,
smoothing weights and gate modulation are non-trivial, then measure side by side in one process

- latency ratio merged / base: forward (prefill) at batch 1 and batch 8, and (tiny stack) greedy
  generation of 16 tokens; interleaved repeats, median of per-repeat ratios. Goal 1.00 +- 0.02:
  ``merge_structlora`` returns a plain Llava of the base's architecture, so the cost is the base's.
- max |logit difference| merged vs the unmerged adapted model (eval mode, fp32); goal <= 1e-4.
  Also the exported stock-PEFT adapter loaded with ``PeftModel.from_pretrained`` (tiny stack).
- for information, the unmerged adapted model's latency ratio (what merging saves).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    Stepper,
    add_common_args,
    apply_method,
    build_llava,
    interleaved,
    load_tiny_base,
    make_batch,
    paired_ratio,
    realistic_shape,
    record_unless_quick,
    setup_threads,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--stacks", default="tiny,realistic")
    p.add_argument("--preset", default="default")
    return p.parse_args(argv)


def trained_structlora(base: torch.nn.Module, rank: int, seed: int, batch: dict, steps: int = 3) -> torch.nn.Module:
    """StructLoRA on a copy of ``base`` after a few large-lr steps (non-trivial gates/graph)."""
    model = apply_method(copy.deepcopy(base), "structlora", r=rank, alpha=2.0 * rank, seed=seed)
    stepper = Stepper(model, "structlora", lr=2e-2)
    for _ in range(steps):
        stepper(batch)
    return model.eval()


def merged_copy(adapted: torch.nn.Module, base: torch.nn.Module) -> torch.nn.Module:
    """Merge a copy (save_structlora -> load_structlora on a fresh copy of the base -> merge), so the
    unmerged model stays available for the side-by-side comparison."""
    from llava_structlora.structlora import load_structlora, merge_structlora, save_structlora

    with tempfile.TemporaryDirectory() as tmp:
        save_structlora(adapted, Path(tmp) / "structlora")
        fresh = load_structlora(copy.deepcopy(base), Path(tmp) / "structlora")
    return merge_structlora(fresh).eval()


@torch.no_grad()
def logits(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def peft_roundtrip_diff(adapted: torch.nn.Module, base: torch.nn.Module, batch: dict, ref: torch.Tensor) -> float:
    """Max |logit diff| of stock PEFT on the exported adapter vs the unmerged adapted model."""
    from peft import PeftModel

    from llava_structlora.structlora import export_peft_adapter

    with tempfile.TemporaryDirectory() as tmp:
        export_peft_adapter(adapted, Path(tmp) / "adapter")
        peft_model = PeftModel.from_pretrained(copy.deepcopy(base), Path(tmp) / "adapter").eval()
        return float((logits(peft_model, batch) - ref).abs().max())


@torch.no_grad()
def max_weight_change(merged: torch.nn.Module, base: torch.nn.Module) -> float:
    """Largest |merged - base| weight entry: shows the merged model really carries the update."""
    return float(max((pm - pb).abs().max() for pm, pb in zip(merged.parameters(), base.parameters())))


def latency(
    models: dict[str, torch.nn.Module], batch: dict, repeats: int, inner: int, gen_tokens: int = 0
) -> dict[str, list[float]]:
    """Interleaved per-call seconds of a no-grad forward (or greedy generate) of each model."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    def call(m):
        with torch.no_grad():
            if gen_tokens:
                return m.generate(
                    **inputs, max_new_tokens=gen_tokens, min_new_tokens=gen_tokens, do_sample=False, pad_token_id=0
                )
            return m(**inputs)

    return interleaved({n: (lambda m=m: call(m)) for n, m in models.items()}, repeats, inner, warmup=2)


def run_stack(name: str, args: argparse.Namespace) -> dict:
    if name == "tiny":
        base, desc = load_tiny_base(args.preset, args.seed)
        shapes, gen, reps, inner = [(1, 32), (8, 32)], 16, args.repeats or (3 if args.quick else 21), 5
    else:
        shape = realistic_shape(1 if args.quick else 2, 1 if args.quick else 2, image_size=56 if args.quick else 112)
        base, desc = build_llava(shape, args.seed), f"random LLaVA-shaped {shape}"
        shapes, gen, reps, inner = (
            [(1, 32)] if args.quick else [(1, 32), (4, 32)],
            0,
            args.repeats or (3 if args.quick else 9),
            1,
        )
    base.eval()
    train_batch = make_batch(base, 2, 16, args.seed)
    adapted = trained_structlora(base, args.rank, args.seed, train_batch)
    merged = merged_copy(adapted, base)
    eval_batch = make_batch(base, 2, 24, args.seed + 1)
    ref = logits(adapted, eval_batch)
    out = {
        "model": desc,
        "max_logit_diff_merged": float((logits(merged, eval_batch) - ref).abs().max()),
        "merged_class": type(merged).__name__,
        "merged_params_equal_base": sum(p.numel() for p in merged.parameters())
        == sum(p.numel() for p in base.parameters()),
        "max_update_norm": max_weight_change(merged, base),
        "latency": {},
    }
    if name == "tiny":
        out["max_logit_diff_peft_export"] = peft_roundtrip_diff(adapted, base, eval_batch, ref)
    runs = [(f"forward b{b}", make_batch(base, b, t, args.seed + 2), 0) for b, t in shapes]
    if gen:
        runs.append((f"generate {gen} tok b1", make_batch(base, 1, 16, args.seed + 3), gen))
    for label, batch, g in runs:
        t = latency({"base": base, "merged": merged, "unmerged": adapted}, batch, reps, inner if not g else 1, g)
        out["latency"][label] = {
            "s": {k: statistics.median(v) for k, v in t.items()},
            "all": t,
            "merged_over_base": paired_ratio(t["merged"], t["base"]),
            "unmerged_over_base": paired_ratio(t["unmerged"], t["base"]),
        }
    return out


def markdown(results: dict[str, dict]) -> str:
    lines = [
        "| stack | measurement | base (ms) | merged (ms) | **merged / base** (median, min-max) | unmerged / base |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for label, l in r["latency"].items():
            mb, ub = l["merged_over_base"], l["unmerged_over_base"]
            lines.append(
                f"| {name} | {label} | {1e3 * l['s']['base']:.2f} | {1e3 * l['s']['merged']:.2f} "
                f"| **{mb['median_ratio']:.3f}** ({mb['min_ratio']:.3f}-{mb['max_ratio']:.3f}) "
                f"| {ub['median_ratio']:.3f} |"
            )
    lines += [
        "",
        "| stack | max abs logit diff merged vs unmerged (fp32) | stock-PEFT export vs unmerged | "
        "max weight change merged vs base | merged model class |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        pe = r.get("max_logit_diff_peft_export")
        lines.append(
            f"| {name} | **{r['max_logit_diff_merged']:.2e}** | {'-' if pe is None else f'{pe:.2e}'} "
            f"| {r['max_update_norm']:.2e} | {r['merged_class']} |"
        )
    lines += [
        "",
        "Goals: merged/base latency 1.00 +- 0.02; logit diff <= 1e-4. Adapters trained 3 steps at lr 2e-2 "
        "(non-trivial gates and smoothing) before merging. Models: "
        + "; ".join(f"{n}: {r['model']}" for n, r in results.items())
        + ".",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_threads(args.threads)
    t0 = time.time()
    results = {n: run_stack(n, args) for n in args.stacks.split(",") if n}
    md = markdown(results)
    print(md)
    record_unless_quick(
        args,
        "inference_merged",
        "Inference: merged StructLoRA vs base (latency) and merge exactness",
        {"args": vars(args), "results": results, "wall_s": time.time() - t0},
        md,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
