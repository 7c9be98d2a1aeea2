"""Training step time and peak memory: StructLoRA vs PEFT LoRA, side by side.

    python benchmarks/train_overhead.py [--quick] [--stacks tiny,realistic] [--grad-ckpt off|on|both] [--profile]

Same q/v targets, rank, alpha, batch and seed for both methods; two copies of one random (or
toy-base) model in one process; interleaved repeats (method order alternates), median of the
per-repeat ratios. Stacks: ``tiny`` = the toy base (artifacts/base/<preset>, or a random Llava of
its widths), ``realistic`` = LLaVA-1.5-7B layer widths (4096-wide Llama layers, 1024-wide CLIP
layers) with a few layers so that it fits 2 cores. Goal at realistic width: <= 1.03x time and
<= +2% peak memory (paper: 1.06x, +4.2%). ``--profile`` adds a torch.profiler table of the
StructLoRA step (top ops with their Python call sites) to say where any extra cost comes from.
``--grad-ckpt on|both`` also (or only) measures with activation checkpointing on, enabled as the
training recipe enables it (``--gradient_checkpointing true``: the Trainer's
``activation_checkpointing_enable`` with the recipe's non-reentrant kwargs, after the adapter, for
both methods); such a run records docs/results/train_overhead_ckpt.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    adapted_count,
    add_common_args,
    build_llava,
    checkpointed_layers,
    fmt_mb,
    interleaved,
    load_tiny_base,
    make_batch,
    make_pair,
    paired_ratio,
    realistic_shape,
    recipe_checkpointing_kwargs,
    setup_threads,
    step_peak_bytes,
    time_steps,
)
from benchmarks.profiling import profile_step  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, "CI-size smoke run (few repeats, 1 LM layer)")
    p.add_argument("--stacks", default="tiny,realistic", help="comma list of tiny,realistic")
    p.add_argument("--preset", default="default", help="toy base preset for the tiny stack")
    p.add_argument("--alpha", type=float, default=16.0)
    p.add_argument("--vision-layers", type=int, default=2)
    p.add_argument("--text-layers", type=int, default=2)
    p.add_argument("--profile", action="store_true", help="print where a StructLoRA step spends its time")
    p.add_argument(
        "--grad-ckpt", default="off", choices=["off", "on", "both"], help="activation checkpointing (recipe's way)"
    )
    return p.parse_args(argv)


def stack_settings(name: str, args: argparse.Namespace) -> dict:
    """Model + batch + repeat counts per stack (quick = CI-size)."""
    if name == "tiny":
        model, desc = load_tiny_base(args.preset, args.seed)
        return {
            "model": model,
            "desc": desc,
            "batch": 8,
            "text_len": 32,
            "repeats": args.repeats or (3 if args.quick else 15),
            "inner": 2 if args.quick else 5,
        }
    if name == "realistic":
        shape = realistic_shape(
            1 if args.quick else args.vision_layers,
            1 if args.quick else args.text_layers,
            image_size=56 if args.quick else 112,
        )
        return {
            "model": build_llava(shape, args.seed),
            "desc": f"random LLaVA-shaped {shape}",
            "batch": 1,
            "text_len": 16 if args.quick else 32,
            "repeats": args.repeats or (3 if args.quick else 9),
            "inner": 1 if args.quick else 2,
        }
    raise SystemExit(f"unknown stack {name!r}; expected tiny or realistic")


def breakdown(stepper, batch: dict, n: int) -> dict[str, float]:
    """Seconds of the StructLoRA-only pieces: the per-step hook, the coordinator's per-forward
    plan (gates, descriptors, GNN, smoothing coefficients; the forward pre-hook) and the regularizer."""
    if stepper._hooks is None:
        return {}
    from llava_structlora.structlora import get_controller

    on_step, reg = stepper._hooks
    ctrl = get_controller(stepper.model)
    k = [stepper.step_idx]

    def hook() -> None:
        on_step(stepper.model, k[0], stepper.max_steps)
        k[0] += 1

    with torch.no_grad():
        t_reg = time_steps(lambda: reg(stepper.model), n)
    return {
        "on_step_s": time_steps(hook, n),
        "regularizer_s": t_reg,
        "coordinator_plan_s": time_steps(lambda: ctrl.plans(ctrl.state(True)), n),
        # similarity-graph rebuild, run by on_step every graph_refresh_steps (amortized)
        "graph_refresh_s": time_steps(ctrl.refresh_graph, n),
        "graph_refresh_steps": ctrl.cfg.graph_refresh_steps,
    }


def run_stack(s: dict, args: argparse.Namespace, ckpt: dict | None) -> dict:
    """One stack (settings ``s``), both methods side by side; ``ckpt``: checkpointing kwargs or None."""
    batch = make_batch(s["model"], s["batch"], s["text_len"], args.seed)
    pair = make_pair(s["model"], args.rank, args.alpha, args.seed, checkpointing=ckpt)
    counts = {m: adapted_count(st.model) for m, st in pair.items()}
    if len(set(counts.values())) != 1:
        raise RuntimeError(f"methods adapt different module counts: {counts}")
    mem = {m: step_peak_bytes(st, batch) for m, st in pair.items()}
    times = interleaved(
        {m: (lambda st=st: st(batch)) for m, st in pair.items()}, repeats=s["repeats"], inner=s["inner"]
    )
    res = {
        "model": s["desc"],
        "grad_ckpt": ckpt,
        "checkpointed_layers": {m: checkpointed_layers(st.model) for m, st in pair.items()},
        "batch": s["batch"],
        "seq_len": int(batch["input_ids"].shape[1]),
        "adapted_modules": counts["lora"],
        "repeats": s["repeats"],
        "inner": s["inner"],
        "step_s": {m: statistics.median(v) for m, v in times.items()},
        "step_s_all": times,
        "time": paired_ratio(times["structlora"], times["lora"]),
        "memory_bytes": mem,
        "memory_ratio_total": mem["structlora"]["total_peak"] / mem["lora"]["total_peak"],
        "memory_ratio_non_frozen": mem["structlora"]["non_frozen_peak"] / mem["lora"]["non_frozen_peak"],
        "trainable_params": {
            m: sum(p.numel() for p in st.model.parameters() if p.requires_grad) for m, st in pair.items()
        },
        "breakdown_structlora": breakdown(pair["structlora"], batch, 3),
    }
    if args.profile:
        res["profile_structlora"] = profile_step(pair["structlora"], batch)
        res["profile_lora"] = profile_step(pair["lora"], batch)
    return res


def markdown(results: dict[str, dict]) -> str:
    lines = [
        "| stack | adapted | batch x seq | LoRA step (s) | StructLoRA step (s) | time ratio (median, min-max) "
        "| peak mem LoRA (MiB) | peak mem StructLoRA (MiB) | mem ratio total | mem ratio w/o frozen weights "
        "| StructLoRA on_step + plan + regularizer (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        t, m, b = r["time"], r["memory_bytes"], r["breakdown_structlora"]
        lines.append(
            f"| {name} | {r['adapted_modules']} | {r['batch']} x {r['seq_len']} | {r['step_s']['lora']:.4f} "
            f"| {r['step_s']['structlora']:.4f} | **{t['median_ratio']:.3f}x** "
            f"({t['min_ratio']:.3f}-{t['max_ratio']:.3f}) "
            f"| {fmt_mb(m['lora']['total_peak'])} | {fmt_mb(m['structlora']['total_peak'])} "
            f"| **{r['memory_ratio_total']:.4f}** | {r['memory_ratio_non_frozen']:.4f} "
            f"| {b.get('on_step_s', 0):.4f} + {b.get('coordinator_plan_s', 0):.4f} + {b.get('regularizer_s', 0):.4f} |"
        )
    for name, r in results.items():
        if r.get("grad_ckpt") is not None:
            lines.append(
                f"\n{name}: activation checkpointing on ({r['grad_ckpt']}, the recipe's --gradient_checkpointing "
                f"true), checkpointed layers per method: {r['checkpointed_layers']}."
            )
    for name, r in results.items():
        b = r["breakdown_structlora"]
        if b:
            lines.append(
                f"\n{name}: similarity-graph refresh {1e3 * b['graph_refresh_s']:.1f} ms every "
                f"{b['graph_refresh_steps']} steps "
                f"(amortized {1e3 * b['graph_refresh_s'] / b['graph_refresh_steps']:.3f} ms/step, "
                "not inside the timed steps)."
            )
    lines += [
        "",
        f"Goal at realistic width: time ratio <= 1.03, total memory ratio <= 1.02 (paper: 1.06x, +4.2%). "
        f"torch threads: {torch.get_num_threads()}. Models: "
        + "; ".join(f"{n}: {r['model']}" for n, r in results.items())
        + ".",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, dict]:
    """Every stack x checkpointing mode; rows named ``<stack>`` (off) and ``<stack>+ckpt`` (on)."""
    kw = None if args.grad_ckpt == "off" else recipe_checkpointing_kwargs()
    modes = {"off": [None], "on": [kw], "both": [None, kw]}[args.grad_ckpt]
    results = {}
    for name in filter(None, args.stacks.split(",")):
        s = stack_settings(name, args)
        for ckpt in modes:
            results[name + ("" if ckpt is None else "+ckpt")] = run_stack(s, args, ckpt)
        del s["model"]
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_threads(args.threads)
    t0 = time.time()
    results = run(args)
    md = markdown(results)
    print(md)
    for name, r in results.items():
        for key in ("profile_structlora", "profile_lora"):
            if key in r:
                print(f"\n### {name}: {key}\n{r[key]}")
    print(
        json.dumps({n: {"time": r["time"], "memory_ratio_total": r["memory_ratio_total"]} for n, r in results.items()})
    )
    if not (args.no_record or args.quick):  # smoke numbers never reach docs/RESULTS.md
        from recipes.results import record_result

        record_result(
            "train_overhead" + ("" if args.grad_ckpt == "off" else "_ckpt"),
            "Training overhead: StructLoRA vs PEFT LoRA (step time, peak memory)"
            + ("" if args.grad_ckpt == "off" else ", with activation checkpointing"),
            {"args": vars(args), "results": results, "wall_s": time.time() - t0},
            md,
            seeds=[args.seed],
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
