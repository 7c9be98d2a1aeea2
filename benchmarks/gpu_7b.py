"""Training throughput and peak memory on a random-init LLaVA-1.5-7B-shaped model, bf16, one GPU:
PEFT LoRA vs StructLoRA. Skips with a clear message when there is no GPU.

    python benchmarks/gpu_7b.py [--batch 4] [--text-len 128] [--layers 32] [--repeats 5] [--out gpu_7b.json]
    python benchmarks/gpu_7b.py --dry-run      # tiny shapes on the CPU: checks the script itself (a test runs it)

bf16 with non-reentrant gradient checkpointing (``--no-checkpointing`` turns it off), every
attention backend of ``--attn`` that is installed (sdpa, and flash_attention_2 when flash-attn is),
and ``--zero2``: each model wrapped in a single-rank DeepSpeed ZeRO-2 engine (zero_configs/zero2.json,
bf16) instead of plain AdamW. Writes the results JSON to ``--out``. Budget: about 8 minutes on one
80+ GB GPU with the defaults (build ~1 min per model and backend, 5 x 3 timed steps each).

Shape = llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14-336 (24 x 1024, 576 image tokens, feature layer
-2) + Llama-7B (32 x 4096, ffn 11008, vocab 32064), weights random (no download), bf16. Both
methods adapt the same 112 q/v modules (r=8, alpha=16) with fp32 adapter weights; the two models
live side by side on the GPU and their steps are interleaved. Reports tokens/s, step time and
``torch.cuda.max_memory_allocated`` per method, and the device name. Nothing depends on it.
``--layers`` shrinks both towers proportionally when the GPU is smaller than ~40 GB.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import METHODS, apply_method, paired_ratio  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--text-len", type=int, default=128)
    p.add_argument("--layers", type=int, default=32, help="LM layers (vision layers = 3/4 of it, as 24/32)")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--inner", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--attn", default="sdpa,flash_attention_2", help="backends to compare (missing ones skipped)")
    p.add_argument("--no-checkpointing", action="store_true", help="disable non-reentrant gradient checkpointing")
    p.add_argument("--zero2", action="store_true", help="single-rank DeepSpeed ZeRO-2 engine per model")
    p.add_argument("--out", default=None, help="results JSON path")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU (no GPU needed; no record)")
    return p.parse_args(argv)


def llava_7b_config(text_layers: int = 32, tiny: bool = False):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    width, ffn, heads, vocab = (64, 128, 4, 32064) if tiny else (4096, 11008, 32, 32064)
    vision = CLIPVisionConfig(
        hidden_size=32 if tiny else 1024,
        intermediate_size=64 if tiny else 4096,
        num_hidden_layers=max(1, text_layers * 3 // 4),
        num_attention_heads=4 if tiny else 16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
    )
    text = LlamaConfig(
        vocab_size=vocab,
        hidden_size=width,
        intermediate_size=ffn,
        num_hidden_layers=text_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        pad_token_id=0,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=32000,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=576,
    )


def device_of(args: argparse.Namespace) -> torch.device:
    return torch.device("cpu" if args.dry_run else "cuda")


def available_backends(names: str) -> tuple[list[str], dict[str, str]]:
    """The requested attention backends that can run here, and why the others were skipped."""
    from llava_structlora.modeling import ModelLoadError, check_attn_implementation

    ok, skipped = [], {}
    for name in [n for n in names.split(",") if n]:
        try:
            check_attn_implementation(name)
            ok.append(name)
        except ModelLoadError as e:
            skipped[name] = str(e)
    return ok, skipped


def build(method: str, cfg, args: argparse.Namespace, attn: str) -> torch.nn.Module:
    """Random bf16 Llava built directly on the device (checkpointing on), then the method's adapter."""
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(args.seed)
    cfg._attn_implementation = attn
    torch.set_default_dtype(torch.bfloat16)
    try:
        with device_of(args):
            model = LlavaForConditionalGeneration(cfg)
    finally:
        torch.set_default_dtype(torch.float32)
    model.config.use_cache = False
    if not args.no_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return apply_method(model, method, args.rank, 2.0 * args.rank, args.seed)  # the shared q/v targets of both


def batch_for(cfg, args: argparse.Namespace) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(args.seed)
    b, n_img = args.batch, 576
    ids = torch.cat(
        [
            torch.ones(b, 1, dtype=torch.long),
            torch.full((b, n_img), cfg.image_token_id),
            torch.randint(3, 32000, (b, args.text_len), generator=g),
        ],
        1,
    )
    labels = ids.clone()
    labels[:, : 1 + n_img] = -100
    pix = torch.randn(b, 3, 336, 336, generator=g).to(torch.bfloat16)
    dev = device_of(args)
    return {
        k: v.to(dev)
        for k, v in {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "labels": labels,
            "pixel_values": pix,
        }.items()
    }


def _zero2_engine(model: torch.nn.Module, args: argparse.Namespace):
    """A one-rank DeepSpeed ZeRO-2 engine (bf16, AdamW) from zero_configs/zero2.json."""
    import json
    import os

    import deepspeed

    for k, v in (
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29533"),
        ("RANK", "0"),
        ("WORLD_SIZE", "1"),
        ("LOCAL_RANK", "0"),
    ):
        os.environ.setdefault(k, v)
    cfg = json.loads((Path(__file__).resolve().parents[1] / "zero_configs" / "zero2.json").read_text())
    cfg.update(
        {
            "train_micro_batch_size_per_gpu": args.batch,
            "gradient_accumulation_steps": 1,
            "train_batch_size": args.batch,
            "gradient_clipping": 1.0,
            "bf16": {"enabled": True},
            "fp16": {"enabled": False},
            "zero_force_ds_cpu_optimizer": False,
            "optimizer": {"type": "AdamW", "params": {"lr": 1e-4, "weight_decay": 0.01}},
        }
    )
    engine, *_ = deepspeed.initialize(
        model=model, model_parameters=[p for p in model.parameters() if p.requires_grad], config=cfg
    )
    return engine


def make_step(model: torch.nn.Module, method: str, batch: dict, args: argparse.Namespace):
    hooks = None
    if method == "structlora":
        from llava_structlora.structlora import structlora_on_step, structlora_regularizer

        hooks = (structlora_on_step, structlora_regularizer)
    state = {"step": 0}
    model.train()
    engine = _zero2_engine(model, args) if args.zero2 else None
    opt = (
        None
        if engine
        else torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.01)
    )

    def step() -> None:
        if hooks:
            hooks[0](model, state["step"], 10_000)
        loss = (engine or model)(**batch).loss
        if hooks:
            loss = loss + hooks[1](model).to(loss.dtype)
        if engine:
            engine.backward(loss)
            engine.step()
        else:
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        state["step"] += 1

    return step


def _sync(args: argparse.Namespace) -> None:
    if not args.dry_run:
        torch.cuda.synchronize()


def timed(step, n: int, args: argparse.Namespace) -> float:
    _sync(args)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    _sync(args)
    return (time.perf_counter() - t0) / n


def measure(cfg, batch, args: argparse.Namespace, attn: str) -> dict:
    """One backend: both methods built, peak memory each, then interleaved timed steps."""
    cuda = not args.dry_run
    steps, peaks = {}, {}
    for m in METHODS:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        model = build(m, cfg, args, attn)
        steps[m] = make_step(model, m, batch, args)
        steps[m]()
        _sync(args)
        base = torch.cuda.memory_allocated() if cuda else 0
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        steps[m]()
        _sync(args)
        peaks[m] = {"steady_bytes": base, "peak_bytes": torch.cuda.max_memory_allocated() if cuda else 0}
    times = {m: [] for m in METHODS}
    for rep in range(args.repeats):
        for m in METHODS if rep % 2 == 0 else METHODS[::-1]:
            times[m].append(timed(steps[m], args.inner, args))
    tokens = args.batch * (1 + 576 + args.text_len)
    return {
        "tokens_per_step": tokens,
        "step_s": {m: statistics.median(v) for m, v in times.items()},
        "step_s_all": times,
        "tokens_per_s": {m: tokens / statistics.median(v) for m, v in times.items()},
        "memory": peaks,
        "time": paired_ratio(times["structlora"], times["lora"]),
        "memory_ratio": (peaks["structlora"]["peak_bytes"] / peaks["lora"]["peak_bytes"]) if cuda else None,
    }


def table(results: dict, args: argparse.Namespace, device: str) -> str:
    lines = ["| attention | method | tokens/s | step (s) | peak GPU memory (GiB) |", "|---|---|---|---|---|"]
    for attn, res in results.items():
        lines += [
            f"| {attn} | {m} | {res['tokens_per_s'][m]:.0f} | {res['step_s'][m]:.3f} | "
            f"{res['memory'][m]['peak_bytes'] / 2**30:.2f} |"
            for m in METHODS
        ]
    lines.append("")
    for attn, res in results.items():
        mem = f"{res['memory_ratio']:.4f}x" if res["memory_ratio"] is not None else "n/a"
        lines.append(
            f"- {attn}: StructLoRA / LoRA time **{res['time']['median_ratio']:.3f}x**, peak memory "
            f"**{mem}** on {device} (bf16, batch {args.batch}, checkpointing "
            f"{'off' if args.no_checkpointing else 'on'}, {'ZeRO-2 1 rank' if args.zero2 else 'AdamW'})."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        args.layers, args.batch, args.text_len, args.repeats, args.inner = 1, 1, 8, 1, 1
    elif not torch.cuda.is_available():
        print(
            "gpu_7b: SKIPPED - no CUDA GPU on this machine (torch.cuda.is_available() is False). "
            "Run it on a GPU host: python benchmarks/gpu_7b.py (or --dry-run to check the script on the CPU)"
        )
        return 0
    t0 = time.time()
    cfg = llava_7b_config(args.layers, tiny=args.dry_run)
    batch = batch_for(cfg, args)
    backends, skipped = available_backends(args.attn)
    device = "cpu (dry run)" if args.dry_run else torch.cuda.get_device_name(0)
    results = {attn: measure(cfg, batch, args, attn) for attn in backends}
    md = table(results, args, device)
    print(md)
    out = {
        "device": device,
        "args": vars(args),
        "backends": results,
        "skipped_backends": skipped,
        "wall_s": time.time() - t0,
    }
    if args.out:
        from llava_structlora.utils.io import atomic_write_json

        atomic_write_json(Path(args.out), out)
    if not args.no_record and not args.dry_run:
        from recipes.results import record_result

        record_result(
            "gpu_7b", "GPU: LLaVA-1.5-7B-shaped (random init, bf16) LoRA vs StructLoRA", out, md, seeds=[args.seed]
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
