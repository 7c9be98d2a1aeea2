"""Scaling of StructLoRA's cost with the number of adapted layers.

    python benchmarks/scaling.py [--quick] [--layers 8,16,32,64]

For N adapted q/v layers (N/4 CLIP blocks + N/4 Llama blocks, so N/2 blocks x {q, v}) of a
moderate-width LLaVA-shaped stack, measure side by side StructLoRA and PEFT LoRA step time and
peak memory, the coordinator's per-forward plan time and the number of graph edges. The extra
cost must grow linearly in N, not quadratically: the similarity graph keeps k neighbours per
node. We report log-log slopes (1 = linear, 2 = quadratic) of the StructLoRA-minus-LoRA step
time, of the extra memory, of the plan time and of the edge count.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    StackShape,
    add_common_args,
    build_llava,
    fmt_mb,
    interleaved,
    make_batch,
    make_pair,
    record_unless_quick,
    setup_threads,
    step_peak_bytes,
    time_steps,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--layers", default=None, help="adapted-layer counts (default 8,16,32,64; quick 8,16)")
    p.add_argument("--text-hidden", type=int, default=512)
    p.add_argument("--vision-hidden", type=int, default=256)
    return p.parse_args(argv)


def shape_for(n_adapted: int, args: argparse.Namespace) -> StackShape:
    if n_adapted % 4:
        raise SystemExit(f"--layers values must be multiples of 4 (q and v in both towers), got {n_adapted}")
    blocks = n_adapted // 4
    return StackShape(
        args.vision_hidden,
        4 * args.vision_hidden,
        4,
        blocks,
        args.text_hidden,
        3 * args.text_hidden,
        8,
        blocks,
        32,
        8,
        1024,
    )


def measure(n: int, args: argparse.Namespace) -> dict:
    from llava_structlora.structlora import get_controller

    model = build_llava(shape_for(n, args), args.seed)
    batch = make_batch(model, 2, 16, args.seed)
    pair = make_pair(model, args.rank, 2.0 * args.rank, args.seed)
    del model
    mem = {m: step_peak_bytes(st, batch) for m, st in pair.items()}
    reps = args.repeats or (2 if args.quick else 7)
    times = interleaved({m: (lambda st=st: st(batch)) for m, st in pair.items()}, reps, 1 if args.quick else 2)
    ctrl = get_controller(pair["structlora"].model)
    kinds: dict[str, int] = {}
    for _, _, kind in ctrl.graph.edges:
        kinds[kind] = kinds.get(kind, 0) + 1
    step = {m: statistics.median(v) for m, v in times.items()}
    return {
        "adapted": n,
        "step_s": step,
        "extra_step_s": step["structlora"] - step["lora"],
        "time_ratio": statistics.median(a / b for a, b in zip(times["structlora"], times["lora"])),
        "peak_bytes": {m: v["total_peak"] for m, v in mem.items()},
        "extra_bytes": mem["structlora"]["total_peak"] - mem["lora"]["total_peak"],
        "plan_s": time_steps(lambda: ctrl.plans(ctrl.state(True)), 5),
        "edges": len(ctrl.graph.edges),
        "edge_kinds": kinds,
        "step_s_all": times,
    }


def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y on log x (None when a y is not positive)."""
    if len(xs) < 2 or any(y <= 0 for y in ys):
        return None
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def markdown(rows: list[dict], slopes: dict[str, float | None], args: argparse.Namespace) -> str:
    lines = [
        "| adapted layers | LoRA step (s) | StructLoRA step (s) | ratio | extra step (ms) | plan (ms) "
        "| extra peak mem (MiB) | LoRA peak (MiB) | graph edges |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['adapted']} | {r['step_s']['lora']:.4f} | {r['step_s']['structlora']:.4f} "
            f"| {r['time_ratio']:.3f} | {1e3 * r['extra_step_s']:.1f} | {1e3 * r['plan_s']:.2f} "
            f"| {fmt_mb(r['extra_bytes'])} | {fmt_mb(r['peak_bytes']['lora'])} | {r['edges']} |"
        )
    fmt = {k: "n/a (non-positive values)" if v is None else f"{v:.2f}" for k, v in slopes.items()}
    lines += [
        "",
        "Log-log slope vs adapted layers (1 = linear, 2 = quadratic): "
        + ", ".join(f"{k} **{v}**" for k, v in fmt.items())
        + ".",
        f"Stack: N/4 CLIP blocks ({args.vision_hidden} wide) + N/4 Llama blocks ({args.text_hidden} wide), "
        "batch 2, 16 image + 17 text tokens, r=8, default StructLoRA config (hybrid graph, k-NN semantic edges).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_threads(args.threads)
    t0 = time.time()
    layers = [int(x) for x in (args.layers or ("8,16" if args.quick else "8,16,32,64")).split(",")]
    rows = []
    for n in layers:
        rows.append(measure(n, args))
        print(
            f"adapted={n}: {rows[-1]['step_s']} extra={rows[-1]['extra_step_s']:.4f}s edges={rows[-1]['edges']}",
            flush=True,
        )
    xs = [r["adapted"] for r in rows]
    slopes = {
        "extra step time": loglog_slope(xs, [r["extra_step_s"] for r in rows]),
        "extra memory": loglog_slope(xs, [r["extra_bytes"] for r in rows]),
        "plan time": loglog_slope(xs, [r["plan_s"] for r in rows]),
        "edges": loglog_slope(xs, [r["edges"] for r in rows]),
    }
    md = markdown(rows, slopes, args)
    print(md)
    record_unless_quick(
        args,
        "scaling_layers",
        "Scaling: StructLoRA overhead vs number of adapted layers",
        {"args": vars(args), "rows": rows, "slopes": slopes, "wall_s": time.time() - t0},
        md,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
