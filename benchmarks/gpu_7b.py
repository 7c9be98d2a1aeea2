"""Training throughput and peak memory on a random-init LLaVA-1.5-7B-shaped model, bf16, one GPU:
PEFT LoRA vs StructLoRA (issue 7, item 4). Skips with a clear message when there is no GPU.

    python benchmarks/gpu_7b.py [--batch 4] [--text-len 128] [--layers 32] [--repeats 5]

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

from benchmarks.common import LORA_QV_REGEX, METHODS, paired_ratio  # noqa: E402


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
    return p.parse_args(argv)


def llava_7b_config(text_layers: int = 32):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=max(1, text_layers * 3 // 4),
                              num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768,
                              hidden_act="quick_gelu")
    text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=text_layers,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                       rms_norm_eps=1e-5, pad_token_id=0)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_id=32000, projector_hidden_act="gelu",
                       vision_feature_select_strategy="default", vision_feature_layer=-2, image_seq_length=576)


def build(method: str, cfg, args: argparse.Namespace) -> torch.nn.Module:
    """Random bf16 Llava built directly on the GPU, then the method's adapter."""
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(args.seed)
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = LlavaForConditionalGeneration(cfg)
    finally:
        torch.set_default_dtype(torch.float32)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        return get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, target_modules=LORA_QV_REGEX))
    from llava_structlora.structlora import StructLoRAConfig, apply_structlora

    return apply_structlora(model, StructLoRAConfig(r=args.rank, alpha=2.0 * args.rank, seed=args.seed))


def batch_for(cfg, args: argparse.Namespace) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(args.seed)
    b, n_img = args.batch, 576
    ids = torch.cat([torch.ones(b, 1, dtype=torch.long), torch.full((b, n_img), cfg.image_token_id),
                     torch.randint(3, 32000, (b, args.text_len), generator=g)], 1)
    labels = ids.clone()
    labels[:, : 1 + n_img] = -100
    pix = torch.randn(b, 3, 336, 336, generator=g).to(torch.bfloat16)
    return {k: v.cuda() for k, v in {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
                                     "pixel_values": pix}.items()}


def make_step(model: torch.nn.Module, method: str, batch: dict):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    hooks = None
    if method == "structlora":
        from llava_structlora.structlora import structlora_on_step, structlora_regularizer

        hooks = (structlora_on_step, structlora_regularizer)
    state = {"step": 0}
    model.train()

    def step() -> None:
        if hooks:
            hooks[0](model, state["step"], 10_000)
        loss = model(**batch).loss
        if hooks:
            loss = loss + hooks[1](model)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["step"] += 1

    return step


def timed(step, n: int) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_7b: SKIPPED - no CUDA GPU on this machine (torch.cuda.is_available() is False). "
              "Run it on a GPU host: python benchmarks/gpu_7b.py")
        return 0
    t0 = time.time()
    cfg = llava_7b_config(args.layers)
    batch = batch_for(cfg, args)
    steps, peaks = {}, {}
    for m in METHODS:  # build + measure peak memory one at a time, then keep both for interleaved timing
        torch.cuda.reset_peak_memory_stats()
        model = build(m, cfg, args)
        steps[m] = make_step(model, m, batch)
        steps[m]()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        steps[m]()
        torch.cuda.synchronize()
        peaks[m] = {"steady_bytes": base, "peak_bytes": torch.cuda.max_memory_allocated()}
    times = {m: [] for m in METHODS}
    for rep in range(args.repeats):
        for m in (METHODS if rep % 2 == 0 else METHODS[::-1]):
            times[m].append(timed(steps[m], args.inner))
    tokens = args.batch * (1 + 576 + args.text_len)
    res = {"device": torch.cuda.get_device_name(0), "tokens_per_step": tokens,
           "step_s": {m: statistics.median(v) for m, v in times.items()}, "step_s_all": times,
           "tokens_per_s": {m: tokens / statistics.median(v) for m, v in times.items()}, "memory": peaks,
           "time": paired_ratio(times["structlora"], times["lora"]),
           "memory_ratio": peaks["structlora"]["peak_bytes"] / peaks["lora"]["peak_bytes"]}
    md = "\n".join([
        "| method | tokens/s | step (s) | peak GPU memory (GiB) |", "|---|---|---|---|",
        *[f"| {m} | {res['tokens_per_s'][m]:.0f} | {res['step_s'][m]:.3f} | {peaks[m]['peak_bytes'] / 2**30:.2f} |"
          for m in METHODS],
        "", f"StructLoRA / LoRA: time **{res['time']['median_ratio']:.3f}x**, peak memory **{res['memory_ratio']:.4f}x** "
        f"on {res['device']} (bf16, batch {args.batch}, {tokens // args.batch} tokens/sample, {args.layers} LM layers)."])
    print(md)
    if not args.no_record:
        from recipes.results import record_result

        record_result("gpu_7b", "GPU: LLaVA-1.5-7B-shaped (random init, bf16) LoRA vs StructLoRA",
                      {"args": vars(args), **res, "wall_s": time.time() - t0}, md, seeds=[args.seed])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
