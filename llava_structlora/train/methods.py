"""Build the trainable model for `--method` (what differs per method: specs.py), the processor and the data.

All adapter methods share the target modules (StructLoRA's target presets), rank, alpha, data and
schedule, so that the comparisons of the paper's tables are fair. `full` trains every language
model parameter (vision tower frozen, as in LLaVA's full fine-tune).
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

import torch
from torch import nn

from .config import ConfigError, DataArguments, ModelArguments, StructLoRAArguments
from .specs import get_spec

logger = logging.getLogger(__name__)


def target_regex(targets: str) -> str:
    """A full-match regex (PEFT semantics) for a StructLoRA target preset or a user regex."""
    from llava_structlora.structlora.config import TARGET_PRESETS

    patterns = TARGET_PRESETS.get(targets, [targets])
    return "|".join(f"(?:.*{p})" if not p.startswith(".*") else f"(?:{p})" for p in patterns)


def peft_config(
    margs: ModelArguments, total_steps: int, model: nn.Module | None = None, keep_dead_layers: bool = False
):
    """The PEFT config of a baseline (DoRA = use_dora, AdaLoRA = AdaLoraConfig with total_step).

    With ``model``, the targets are the explicit module list of StructLoRA's resolver (same live modules,
    dead vision layers left out unless ``keep_dead_layers``); without it, the preset's regex.
    A tuned projector goes in `modules_to_save`, so the stock PEFT adapter carries it.
    """
    from llava_structlora.structlora import resolve_target_modules

    targets = (
        target_regex(margs.targets)
        if model is None
        else resolve_target_modules(model, margs.targets, keep_dead_layers=keep_dead_layers)
    )
    spec = get_spec(margs.method)
    common: dict[str, Any] = dict(
        target_modules=targets,
        lora_alpha=margs.lora_alpha,
        lora_dropout=spec.dropout(margs),
        bias="none",
        modules_to_save=["multi_modal_projector"] if margs.tune_mm_projector else None,
    )
    return spec.peft_config(margs, total_steps, common)


def projector_module(model: nn.Module) -> nn.Module:
    """The multimodal projector, wherever PEFT wrapping put it."""
    for name, module in model.named_modules():
        if name.endswith("multi_modal_projector"):
            return module
    raise ConfigError("tune_mm_projector: the model has no multi_modal_projector")


def projector_param_names(model: nn.Module) -> set[str]:
    return {n for n, _ in model.named_parameters() if ".multi_modal_projector." in f".{n}"}


def enable_full(model: nn.Module) -> int:
    """`full`: every language-model parameter (incl. embeddings and lm_head) trains."""
    n = 0
    for name, p in model.named_parameters():
        if re.search(r"(?:^|\.)(language_model|lm_head)\.", f".{name}"):
            p.requires_grad_(True)
            n += 1
    if n == 0:
        raise ConfigError("method=full: found no language_model parameters to train")
    return n


def base_load_dtype(margs: ModelArguments, targs: Any) -> torch.dtype:
    """The dtype the frozen base is loaded in: the training dtype (--bf16 / --fp16), else fp32.

    `full` without DeepSpeed keeps fp32: its trained weights ARE the base, and the Trainer's AMP needs
    fp32 master weights (DeepSpeed keeps its own fp32 master copy, so there bf16 is fine).
    """
    half = torch.bfloat16 if getattr(targs, "bf16", False) else torch.float16 if getattr(targs, "fp16", False) else None
    if half is None or (get_spec(margs.method).full_model and not getattr(targs, "deepspeed", None)):
        return torch.float32
    return half


def build_model(
    margs: ModelArguments,
    sargs: StructLoRAArguments,
    seed: int,
    total_steps: int,
    *,
    dtype: str | torch.dtype = torch.float32,
    gradient_checkpointing: bool = False,
) -> nn.Module:
    """Load the base in `dtype` (see base_load_dtype) and make it trainable; adapters are fp32."""
    from llava_structlora.modeling import load_base_model

    torch.manual_seed(seed)  # adapter init depends only on the seed, identical on every rank
    model = load_base_model(
        margs.model_name_or_path, dtype=dtype, attn_implementation=margs.attn_implementation, bits=margs.bits
    )
    model.config.use_cache = False
    if margs.bits is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    spec = get_spec(margs.method)
    model = spec.build(model, margs, sargs, seed, total_steps)
    if margs.tune_mm_projector and not spec.peft:  # PEFT trains it as modules_to_save
        for p in projector_module(model).parameters():
            p.requires_grad_(True)
    _log_trainable(model, margs.method)
    return model


def align_lora_init(model: nn.Module, seed: int) -> int:
    """Give PEFT's lora_A the same per-module seeded init as StructLoRA (B stays 0).

    PEFT draws A from the global RNG in module order; StructLoRA seeds each module from
    (seed, module name). Using one init for every method makes baselines start from identical
    factors (fair comparisons; `lora` == `structlora --filter none --coordinator none` step for step).
    """
    from peft.tuners.lora import LoraLayer

    from llava_structlora.structlora import name_seed

    n = 0
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and "default" in module.lora_A:
            weight = module.lora_A["default"].weight
            gen = torch.Generator(device=weight.device).manual_seed(
                name_seed(seed, name.removeprefix("base_model.model."))
            )
            with torch.no_grad():
                nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=gen)
            n += 1
    return n


def _log_trainable(model: nn.Module, method: str) -> None:
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    if n_train == 0:
        raise ConfigError(f"method={method}: no trainable parameters (targets matched nothing?)")
    logger.info("method=%s: %d trainable / %d parameters (%.3f%%)", method, n_train, n_all, 100.0 * n_train / n_all)


def load_processor(margs: ModelArguments):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(margs.model_name_or_path)


def build_dataset(dargs: DataArguments, processor, seed: int):
    """LLaVA supervised dataset(s), each optionally a deterministic fraction (same subset on every rank);
    several data_path sources are mixed with data_ratios (data/mixing.py)."""
    from llava_structlora.data import LazySupervisedDataset, conv_system
    from llava_structlora.data.mixing import build_mixture

    from .config import data_sources

    def source(path: str):
        ds = LazySupervisedDataset(
            path,
            processor,
            image_folder=dargs.image_folder,
            model_max_length=dargs.model_max_length,
            limit=dargs.max_train_samples,
            system=conv_system(dargs.conv_template),
        )
        if dargs.data_fraction < 1.0:
            g = torch.Generator().manual_seed(seed)
            keep = max(1, int(round(len(ds) * dargs.data_fraction)))
            idx = sorted(torch.randperm(len(ds), generator=g)[:keep].tolist())
            ds.records = [ds.records[i] for i in idx]
        logger.info("training records: %d from %s (skipped: %s)", len(ds), path, dict(ds.skipped))
        return ds

    return build_mixture(data_sources(dargs), source, seed, dargs.mix_size)
