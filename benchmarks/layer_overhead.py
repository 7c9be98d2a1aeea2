"""StructLoRA vs LoRA training cost (forward + backward) on a stack of wide transformer-like blocks.

Both variants run through ``apply_structlora`` on identical stacks: LoRA = ``filter="none",
coordinator="none"`` (op-for-op PEFT LoRA), StructLoRA = the configured variant (default: IB
hard-concrete gates + 1-layer GAT coordinator + hybrid graph). Timings are interleaved (the order
alternates every repeat) and the median is reported, so drifting load on a shared machine hits
both alike; on CPU the clock is the process's CPU time by default (``--clock wall`` for wall time).
The FLOP ratio of one forward + backward (``FlopCounterMode``) is printed as a load-independent check.
Each block has q/k/v/o projections (q, v adapted, as in the paper) and optionally a
LLaMA MLP; the coordinator runs once per forward of the whole stack, as in training.

    python benchmarks/layer_overhead.py --width 4096 --blocks 8 --tokens 64 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llava_structlora.structlora import StructLoRAConfig, apply_structlora, get_controller  # noqa: E402


class _Attn(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(d, d, bias=False) for _ in range(4))


class _Block(nn.Module):
    def __init__(self, d: int, mlp: int) -> None:
        super().__init__()
        self.self_attn = _Attn(d)
        self.mlp = (
            nn.ModuleDict(
                {
                    "gate_proj": nn.Linear(d, mlp, bias=False),
                    "up_proj": nn.Linear(d, mlp, bias=False),
                    "down_proj": nn.Linear(mlp, d, bias=False),
                }
            )
            if mlp
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.self_attn
        x = x + a.o_proj(torch.sigmoid(a.q_proj(x)) * a.k_proj(x) + a.v_proj(x))  # matmul-bound stand-in for attention
        if self.mlp is not None:
            x = x + self.mlp["down_proj"](F.silu(self.mlp["gate_proj"](x)) * self.mlp["up_proj"](x))
        return x


class _LM(nn.Module):
    def __init__(self, d: int, blocks: int, mlp: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Block(d, mlp) for _ in range(blocks))


class Stack(nn.Module):
    """Names follow the LLaVA LM layout so the default ``targets="qv"`` preset applies."""

    def __init__(self, d: int, blocks: int, mlp: int) -> None:
        super().__init__()
        self.language_model = _LM(d, blocks, mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.language_model.layers:
            x = block(x)
        return x


def build(args, cfg: StructLoRAConfig, device, dtype) -> nn.Module:
    torch.manual_seed(0)
    model = Stack(args.width, args.blocks, args.mlp).to(device=device, dtype=dtype)
    model = apply_structlora(model, cfg)
    with torch.no_grad():  # non-zero B so every path (incl. the coordinator's) does real work
        for layer in get_controller(model).layers:
            layer.lora_B.normal_(std=1e-3)
    return model.train()


def step_time(model: nn.Module, x: torch.Tensor, device, clock: str = "wall") -> float:
    """One forward + backward. ``clock="cpu"`` is this process's CPU time: on a shared CPU box it
    measures the work done and not the time spent waiting for other tenants' jobs."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = now()
    model(x).float().square().mean().backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = now() - t0
    model.zero_grad(set_to_none=True)
    return dt


def flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward + backward (torch's FlopCounterMode): the load-independent cost ratio."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(x).float().square().mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=4096)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--mlp", type=int, default=0, help="MLP width (11008 for LLaMA-7B; 0 = attention projections only)")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--coordinator", default="gnn")
    p.add_argument("--graph", default="hybrid")
    p.add_argument("--threads", type=int, default=1, help="torch threads on CPU (0 = leave as is)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument(
        "--clock",
        default="auto",
        choices=["auto", "wall", "cpu"],
        help="auto: process CPU time on CPU (robust on shared machines), wall time on CUDA",
    )
    p.add_argument("--record", action="store_true", help="write docs/results/layer_overhead.json (+ RESULTS.md)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    clock = args.clock if args.clock != "auto" else ("wall" if device.type == "cuda" else "cpu")
    variants = {
        "lora": build(args, StructLoRAConfig(r=args.r, filter="none", coordinator="none"), device, dtype),
        "structlora": build(
            args, StructLoRAConfig(r=args.r, coordinator=args.coordinator, graph=args.graph), device, dtype
        ),
    }
    ctrl = get_controller(variants["structlora"])
    ranks = [args.r * c for c in ctrl.counts]
    x = torch.randn(args.tokens, args.width, device=device, dtype=dtype, requires_grad=False)
    times = {k: [] for k in variants}
    for i in range(args.warmup + args.repeats):
        order = list(variants) if i % 2 == 0 else list(reversed(variants))
        for name in order:
            dt = step_time(variants[name], x, device, clock)
            if i >= args.warmup:
                times[name].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    pair = statistics.median(s / l for s, l in zip(times["structlora"], times["lora"]))
    fl = {k: flops(m, x) for k, m in variants.items()}
    res = {
        "lora_s": med["lora"],
        "structlora_s": med["structlora"],
        "ratio": med["structlora"] / med["lora"],
        "paired_ratio": pair,
        "min_ratio": best["structlora"] / best["lora"],
        "flop_ratio": fl["structlora"] / fl["lora"],
        "mean_stacked_rank": sum(ranks) / len(ranks),
        "edges": ctrl.graph.kinds(),
    }
    res["clock"] = clock
    print(
        f"device={device} dtype={args.dtype} width={args.width} blocks={args.blocks} mlp={args.mlp} "
        f"tokens={args.tokens} r={args.r} repeats={args.repeats} threads={torch.get_num_threads()} clock={clock}"
    )
    print(f"graph edges {res['edges']}; stacked rank per layer: mean {res['mean_stacked_rank']:.1f}, max {max(ranks)}")
    print(
        f"fwd+bwd median ({clock} time): LoRA {med['lora'] * 1e3:.1f} ms | "
        f"StructLoRA {med['structlora'] * 1e3:.1f} ms | "
        f"StructLoRA/LoRA = {res['ratio']:.3f} (median of paired ratios {pair:.3f}; ratio of minima "
        f"{res['min_ratio']:.3f})"
    )
    print(
        f"fwd+bwd FLOPs: LoRA {fl['lora'] / 1e9:.2f} G | StructLoRA {fl['structlora'] / 1e9:.2f} G | "
        f"ratio {res['flop_ratio']:.4f}"
    )
    if args.record:
        record(args, res, str(device))
    return res


def record(args: argparse.Namespace, res: dict, device: str) -> None:
    """One row per run; the command line is in the record."""
    from recipes.results import record_result

    md = "\n".join(
        [
            "| stack | tokens | clock | LoRA fwd+bwd | StructLoRA fwd+bwd | StructLoRA / LoRA (median; paired) "
            "| FLOP ratio | mean stacked rank |",
            "|---|---|---|---|---|---|---|---|",
            f"| {args.blocks} blocks x {args.width} wide{f', MLP {args.mlp}' if args.mlp else ''} "
            f"({device}, {args.dtype}) | "
            f"{args.tokens} | {res['clock']} | {res['lora_s'] * 1e3:.1f} ms | {res['structlora_s'] * 1e3:.1f} ms | "
            f"{res['ratio']:.3f}; {res['paired_ratio']:.3f} | {res['flop_ratio']:.4f} | "
            f"{res['mean_stacked_rank']:.1f} |",
        ]
    )
    md += (
        f"\n\nInterleaved repeats ({args.repeats}, after {args.warmup} warm-up), r={args.r}, coordinator "
        f"{args.coordinator}, graph {args.graph}; goal <= 1.03x at 4096 width (paper: 1.06x)."
    )
    record_result(
        "layer_overhead",
        "Micro-benchmark: StructLoRA vs LoRA layer stack, forward + backward",
        {k: v for k, v in res.items()},
        md,
    )


if __name__ == "__main__":
    main()
