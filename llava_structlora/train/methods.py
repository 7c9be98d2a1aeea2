"""Build the trainable model for `--method` (what differs per method: specs.py), the processor and the data.

All adapter methods share the target modules (StructLoRA's target presets), rank, alpha, data and
schedule, so that the comparisons of the paper's tables are fair. `full` trains every language
model parameter (vision tower frozen, as in LLaVA's full fine-tune).
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from torch import nn
from transformers import AutoProcessor

from llava_structlora.data import LazySupervisedDataset, conv_system
from llava_structlora.data.mixing import build_mixture
from llava_structlora.modeling import load_base_model
from llava_structlora.structlora import StructLoRAConfig

from .builders import align_lora_init, enable_full, peft_common, projector_module, projector_param_names, target_regex
from .errors import ConfigError
from .options import DataArguments, ModelArguments, StructLoRAArguments, build_structlora_config
from .specs import get_spec
from .validation import data_sources

__all__ = [  # the helpers of builders.py keep their old import path here
    "align_lora_init",
    "base_load_dtype",
    "build_dataset",
    "build_model",
    "enable_full",
    "load_processor",
    "peft_config",
    "projector_param_names",
    "target_regex",
]
logger = logging.getLogger(__name__)


def peft_config(
    margs: ModelArguments, total_steps: int, model: nn.Module | None = None, keep_dead_layers: bool = False
):
    """The PEFT config of a baseline (DoRA = use_dora, AdaLoRA = AdaLoraConfig with total_step).

    With ``model``, the targets are the explicit module list of StructLoRA's resolver (same live modules,
    dead vision layers left out unless ``keep_dead_layers``); without it, the preset's regex.
    """
    spec = get_spec(margs.method)
    return spec.peft_config(margs, total_steps, peft_common(margs, spec.dropout(margs), model, keep_dead_layers))


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
    adapter: Optional[StructLoRAConfig] = None,
) -> nn.Module:
    """Load the base in `dtype` (see base_load_dtype) and make it trainable; adapters are fp32.

    Args:
        adapter: the run's StructLoRAConfig (TrainConfig.adapter); built from margs/sargs/seed when not given.
    """
    adapter = adapter if adapter is not None else build_structlora_config(margs, sargs, seed)
    torch.manual_seed(seed)  # adapter init depends only on the seed, identical on every rank
    model = load_base_model(
        margs.model_name_or_path, dtype=dtype, attn_implementation=margs.attn_implementation, bits=margs.bits
    )
    model.config.use_cache = False
    if margs.bits is not None:
        from peft import prepare_model_for_kbit_training  # QLoRA only (bitsandbytes)

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    spec = get_spec(margs.method)
    model = spec.build(model, margs, adapter, total_steps)
    if margs.tune_mm_projector and not spec.peft:  # PEFT trains it as modules_to_save
        for p in projector_module(model).parameters():
            p.requires_grad_(True)
    _log_trainable(model, margs.method)
    return model


def _log_trainable(model: nn.Module, method: str) -> None:
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    if n_train == 0:
        raise ConfigError(f"method={method}: no trainable parameters (targets matched nothing?)")
    logger.info("method=%s: %d trainable / %d parameters (%.3f%%)", method, n_train, n_all, 100.0 * n_train / n_all)


def load_processor(margs: ModelArguments):
    return AutoProcessor.from_pretrained(margs.model_name_or_path)


def build_dataset(dargs: DataArguments, processor, seed: int):
    """LLaVA supervised dataset(s), each optionally a deterministic fraction (same subset on every rank);
    several data_path sources are mixed with data_ratios (data/mixing.py)."""

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
