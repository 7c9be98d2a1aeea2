"""Shared machinery of the benchmarks: models, batches, adapters, one training step, timers.

Why one module: every figure in docs/RESULTS.md is a ratio of two things measured side by side
in one process (same weights, same batch, same seed, interleaved repeats), and the benchmarks
must agree on what "a training step" and "peak memory" mean:

- step = ``structlora_on_step`` (StructLoRA only) + forward + loss (+ regularizer) + backward +
  AdamW step + ``zero_grad(set_to_none=True)``, i.e. what the Trainer does per optimizer step.
- peak memory (CPU has no allocator statistics) = bytes of the tensors alive at the start of a
  step (parameters, optimizer state; gradients are None after ``zero_grad``) + the peak of the
  allocations made during the step, read from ``torch.profiler``'s memory events. This is exact
  and deterministic, unlike RSS on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from recipes.layout import RepoLayout

LAYOUT = RepoLayout.checkout()
REPO = LAYOUT.root
# PEFT matches target_modules with re.fullmatch; StructLoRA's "qv" preset with re.search.
LORA_QV_REGEX = r".*(?:vision_tower|language_model)\..*layers\.\d+\.self_attn\.(?:q_proj|v_proj)"
METHODS = ("lora", "structlora")


def add_common_args(p: argparse.ArgumentParser, quick_help: str = "CI-size smoke run (prints only)") -> None:
    """The flags every side-by-side benchmark shares (rank, seed, threads, repeats, recording)."""
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default per benchmark)")
    p.add_argument(
        "--no-record", action="store_true", help="print only; do not write docs/results (--quick never writes)"
    )


def record_unless_quick(args: argparse.Namespace, name: str, title: str, data: dict, md: str) -> None:
    """record_result for the flags of add_common_args: --quick and --no-record numbers never reach docs/RESULTS.md."""
    if args.no_record or args.quick:
        return
    from recipes.results import record_result

    record_result(name, title, data, md, seeds=[args.seed])


def setup_threads(threads: int) -> None:
    """Fixed thread count; PASSIVE OpenMP waits avoid multi-second stalls on shared cores."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- models
@dataclass(frozen=True)
class StackShape:
    """A LlavaForConditionalGeneration shape (CLIP tower + Llama LM), random weights."""

    vision_hidden: int
    vision_ffn: int
    vision_heads: int
    vision_layers: int
    text_hidden: int
    text_ffn: int
    text_heads: int
    text_layers: int
    image_size: int
    patch_size: int
    vocab_size: int

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2  # CLS dropped ("default" strategy)


def realistic_shape(
    vision_layers: int = 2, text_layers: int = 2, image_size: int = 112, vocab_size: int = 4096
) -> StackShape:
    """LLaVA-1.5-7B layer widths (CLIP ViT-L/14: 1024/4096/16 heads; Llama-7B: 4096/11008/32
    heads) with few layers, a small image (112 px -> 64 image tokens) and a small vocabulary so
    that the per-layer cost dominates the step as it does in the 32-layer model."""
    return StackShape(1024, 4096, 16, vision_layers, 4096, 11008, 32, text_layers, image_size, 14, vocab_size)


def tiny_shape(vision_layers: int = 2, text_layers: int = 3) -> StackShape:
    """The toy base's widths (llava_structlora/toy/model_config.py default preset)."""
    return StackShape(128, 256, 4, vision_layers, 192, 512, 4, text_layers, 48, 16, 512)


def build_llava(shape: StackShape, seed: int = 0) -> nn.Module:
    """Random-init stock LlavaForConditionalGeneration of ``shape`` (fp32, eval-free, CPU).

    The config is the toy base's (``llava_structlora.toy.model_config.llava_config``) at these widths,
    reading the last vision layer, with room for 1024 positions.
    """
    from transformers import LlavaForConditionalGeneration

    from llava_structlora.toy.model_config import ModelConfig, llava_config

    m = ModelConfig(**dataclasses.asdict(shape), model_max_length=1024, vision_feature_layer=-1)
    cfg = llava_config(m, shape.vocab_size, shape.vocab_size - 1, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    return LlavaForConditionalGeneration(cfg).float()


def load_tiny_base(preset: str = "default", seed: int = 0) -> tuple[nn.Module, str]:
    """``artifacts/base/<preset>`` when built, else a random tiny Llava of the toy shape."""
    from transformers import LlavaForConditionalGeneration

    base_dir = LAYOUT.base(preset)
    if (base_dir / "config.json").exists():
        return LlavaForConditionalGeneration.from_pretrained(base_dir, dtype=torch.float32), str(base_dir)
    return build_llava(tiny_shape(), seed), f"random tiny Llava (toy '{preset}' widths; {base_dir} absent)"


def make_batch(model: nn.Module, batch_size: int, text_len: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Synthetic LLaVA batch: BOS, the image tokens, ``text_len`` random text tokens, labels on text."""
    cfg = model.config
    vcfg = cfg.vision_config
    n_img = (vcfg.image_size // vcfg.patch_size) ** 2
    if getattr(cfg, "vision_feature_select_strategy", "default") == "full":
        n_img += 1
    vocab = cfg.text_config.vocab_size
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(3, min(vocab - 2, 30000), (batch_size, text_len), generator=g)
    img = torch.full((batch_size, n_img), cfg.image_token_id)
    ids = torch.cat([torch.ones(batch_size, 1, dtype=torch.long), img, text], 1)
    labels = ids.clone()
    labels[:, : 1 + n_img] = -100
    pixels = torch.randn(batch_size, 3, vcfg.image_size, vcfg.image_size, generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels, "pixel_values": pixels}


# ----------------------------------------------------------------------------- adapters
def apply_method(
    model: nn.Module, method: str, r: int = 8, alpha: float = 16.0, seed: int = 0, **structlora_kw: Any
) -> nn.Module:
    """PEFT LoRA or StructLoRA on the same q/v targets with the same rank/alpha/seed.

    PEFT gets the module list of the recipes' one resolver (dead vision layers above
    ``vision_feature_layer`` skipped, as for StructLoRA), so both adapt the same modules on any base."""
    torch.manual_seed(seed)
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        from llava_structlora.structlora import resolve_target_modules

        targets = resolve_target_modules(model, LORA_QV_REGEX)
        return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets))
    if method == "structlora":
        from llava_structlora.structlora import StructLoRAConfig, apply_structlora

        return apply_structlora(model, StructLoRAConfig(r=r, alpha=alpha, seed=seed, **structlora_kw))
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def adapted_count(model: nn.Module) -> int:
    """Number of wrapped (adapted) modules: PEFT LoRA layers or StructLoRA layers."""
    n = 0
    for m in model.modules():
        name = type(m).__name__
        if name == "StructLoRALinear" or (hasattr(m, "lora_A") and isinstance(m.lora_A, nn.ModuleDict)):
            n += 1
    return n


class Stepper:
    """One optimizer step of a method, exactly as the training loop does it."""

    def __init__(self, model: nn.Module, method: str, lr: float = 1e-4, max_steps: int = 1000) -> None:
        self.model, self.method, self.max_steps, self.step_idx = model, method, max_steps, 0
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=0.01)
        self._hooks: tuple[Callable, Callable] | None = None
        if method == "structlora":
            from llava_structlora.structlora import structlora_on_step, structlora_regularizer

            self._hooks = (structlora_on_step, structlora_regularizer)
        model.train()

    def __call__(self, batch: dict[str, torch.Tensor]) -> float:
        if self._hooks is not None:
            self._hooks[0](self.model, self.step_idx, self.max_steps)
        loss = self.model(**batch).loss
        if self._hooks is not None:
            loss = loss + self._hooks[1](self.model)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step_idx += 1
        return float(loss.detach())


def recipe_checkpointing_kwargs() -> dict[str, Any]:
    """The activation-checkpointing kwargs the training recipe gives the Trainer for
    ``--gradient_checkpointing true`` (llava_structlora/train/config.py fills in non-reentrant)."""
    from llava_structlora.train.config import parse_args

    argv = ["--output_dir", "/tmp/unused", "--model_name_or_path", "/unused", "--use_cpu", "true"]
    *_, targs = parse_args(argv + ["--gradient_checkpointing", "true"], check_paths=False)
    assert targs.activation_checkpointing
    return dict(targs.activation_checkpointing_kwargs or {})


def enable_checkpointing(model: nn.Module, kwargs: dict[str, Any]) -> int:
    """Turn checkpointing on exactly as transformers' Trainer does at the start of ``train()``
    (``activation_checkpointing_enable``, which also calls ``enable_input_require_grads``; the
    recipe's build_model sets ``use_cache=False``). Returns the number of checkpointed layers."""
    gc = dict(kwargs)
    every_n_layers, offload = gc.pop("every_n_layers", 1), gc.pop("offload", False)
    model.config.use_cache = False
    model.activation_checkpointing_enable(
        activation_checkpointing_kwargs=gc or None, every_n_layers=every_n_layers, offload=offload
    )
    return checkpointed_layers(model)


def checkpointed_layers(model: nn.Module) -> int:
    from transformers.modeling_layers import GradientCheckpointingLayer

    return sum(isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing for m in model.modules())


def make_pair(
    base: nn.Module,
    r: int,
    alpha: float,
    seed: int,
    lr: float = 1e-4,
    checkpointing: dict[str, Any] | None = None,
    **structlora_kw: Any,
) -> dict[str, Stepper]:
    """Two independent copies of ``base`` (identical weights), one per method; ``checkpointing``
    (kwargs, see enable_checkpointing) turns activation checkpointing on after the adapter, as
    the Trainer does."""
    pair = {}
    for m in METHODS:
        model = apply_method(copy.deepcopy(base), m, r, alpha, seed, **(structlora_kw if m == "structlora" else {}))
        if checkpointing is not None:
            enable_checkpointing(model, checkpointing)
        pair[m] = Stepper(model, m, lr)
    return pair


# ----------------------------------------------------------------------------- measurement
def _live_bytes(tensors: Sequence[torch.Tensor]) -> int:
    seen, total = set(), 0
    for t in tensors:
        st = t.untyped_storage()
        key = st.data_ptr()
        if key not in seen and st.device.type != "meta":
            seen.add(key)
            total += st.nbytes()
    return total


def state_bytes(stepper: Stepper) -> dict[str, int]:
    """Bytes alive between steps: frozen weights, trainable weights, optimizer state."""
    params = list(stepper.model.parameters())
    frozen = _live_bytes([p for p in params if not p.requires_grad])
    trainable = _live_bytes([p for p in params if p.requires_grad])
    buffers = _live_bytes(list(stepper.model.buffers()))
    opt = _live_bytes([v for s in stepper.opt.state.values() for v in s.values() if torch.is_tensor(v)])
    return {"frozen": frozen, "trainable": trainable, "buffers": buffers, "optimizer": opt}


def step_peak_bytes(stepper: Stepper, batch: dict[str, torch.Tensor]) -> dict[str, int]:
    """Peak memory of one step = live state + peak of the step's own allocations (profiler)."""
    from torch.profiler import ProfilerActivity, profile

    stepper(batch)  # optimizer state exists from here on
    before = state_bytes(stepper)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        stepper(batch)
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        cur += e.nbytes()
        peak = max(peak, cur)
    base = sum(before.values())
    return {**before, "step_peak": peak, "total_peak": base + peak, "non_frozen_peak": base - before["frozen"] + peak}


def time_steps(step: Callable[[], Any], n: int) -> float:
    """Mean seconds per call of ``n`` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, inner: int, warmup: int = 1) -> dict[str, list[float]]:
    """Per-call times of each fn, alternating fns (and their order) every repeat, so slow
    phases of a shared machine hit every fn alike; ``warmup`` calls each are discarded."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    out: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            out[name].append(time_steps(fns[name], inner))
    return out


def paired_ratio(num: list[float], den: list[float]) -> dict[str, float]:
    """Median of the per-repeat ratios (robust to drifting load) + the ratio of medians."""
    ratios = [a / b for a, b in zip(num, den)]
    return {
        "median_ratio": statistics.median(ratios),
        "ratio_of_medians": statistics.median(num) / statistics.median(den),
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
    }


def fmt_mb(n: float) -> str:
    return f"{n / 2**20:.1f}"
