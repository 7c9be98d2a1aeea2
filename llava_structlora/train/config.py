"""Training configuration: four dataclasses, parsed from a YAML file and/or the command line.

`--config recipe.yaml` supplies values; flags given on the command line override them. Every
value is validated here, before a model, a dataset or a DeepSpeed launcher is touched, so a
typo in a recipe fails in a second with a message naming the field (and the YAML file).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import transformers
import yaml

METHODS = ("structlora", "lora", "dora", "adalora", "lora_dropout", "full")
TASKS = ("coco", "vqav2", "gqa")


class ConfigError(ValueError):
    """A missing, garbled or inconsistent configuration value (raised before launch)."""


@dataclass
class ModelArguments:
    """Which base model and which fine-tuning method (shared by all methods for fair comparisons)."""

    model_name_or_path: Optional[str] = field(default=None, metadata={"help": "HF Llava directory (save_pretrained layout)."})
    method: str = field(default="structlora", metadata={"help": "|".join(METHODS)})
    lora_r: int = field(default=8, metadata={"help": "Adapter rank r (all adapter methods)."})
    lora_alpha: float = field(default=16.0, metadata={"help": "Adapter scale alpha (update scale alpha / r)."})
    lora_dropout: Optional[float] = field(default=None, metadata={"help": "Adapter input dropout; default 0 (0.1 for --method lora_dropout)."})
    targets: str = field(default="qv", metadata={"help": "Target preset (qv|qkv|qkvo) or one regex over module names."})
    tune_mm_projector: bool = field(default=False, metadata={"help": "Also train the multimodal projector in full."})
    mm_projector_lr: Optional[float] = field(default=None, metadata={"help": "Projector lr (default: learning_rate)."})
    adalora_init_r: int = field(default=12, metadata={"help": "AdaLoRA initial rank (pruned to lora_r)."})
    attn_implementation: Optional[str] = field(default=None, metadata={
        "help": "Attention backend: sdpa|eager|flash_attention_2 (default: transformers' choice, sdpa)."})
    bits: Optional[int] = field(default=None, metadata={
        "help": "QLoRA: load the base in 4 or 8 bit (bitsandbytes, CUDA); adapters stay fp32. Default: no."})


@dataclass
class DataArguments:
    """Training data (LLaVA instruction JSON) and the quick validation run at the end."""

    data_path: Optional[str] = field(default=None, metadata={"help": "LLaVA instruction JSON (DATA_ROOT/<task>/llava_train.json)."})
    image_folder: Optional[str] = field(default=None, metadata={"help": "Image root (default: the task manifest's image_folder)."})
    model_max_length: Optional[int] = field(default=None, metadata={"help": "Truncation length (default: tokenizer's)."})
    data_fraction: float = field(default=1.0, metadata={"help": "Fraction of training records used (low-data tables)."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Hard cap on training records."})
    task: Optional[str] = field(default=None, metadata={"help": "coco|vqav2|gqa: selects the validation scorer."})
    data_root: Optional[str] = field(default=None, metadata={"help": "DATA_ROOT for the validation run."})
    eval_split: str = field(default="val", metadata={"help": "Split of the validation run."})
    eval_batch_size: int = field(default=32, metadata={"help": "Batch size of the validation run."})


@dataclass
class StructLoRAArguments:
    """StructLoRA knobs exposed on the CLI (names as in StructLoRAConfig; see DESIGN.md §1)."""

    filter: str = field(default="ib", metadata={"help": "ib|topk_norm|random|none"})
    gate: str = field(default="hard_concrete", metadata={"help": "hard_concrete|gaussian|gumbel"})
    coordinator: str = field(default="gnn", metadata={"help": "gnn|laplacian|cosine_penalty|laplacian_penalty|none"})
    graph: str = field(default="hybrid", metadata={"help": "hybrid|adjacency|similarity"})
    gnn_layers: int = 1
    gnn_type: str = field(default="gat", metadata={"help": "gat|gcn"})
    lambda_ib: Optional[float] = field(default=None, metadata={"help": "See StructLoRAConfig.lambda_ib."})
    lambda_penalty: float = 1e-2
    graph_refresh_steps: int = 100
    keep_k: Optional[int] = None
    # Issue 11 knobs; None = StructLoRAConfig's default (the one source of truth; issue 13 generates this class).
    gate_init: Optional[float] = field(default=None, metadata={"help": "See StructLoRAConfig.gate_init."})
    gate_noise: Optional[str] = field(default=None, metadata={"help": "See StructLoRAConfig.gate_noise."})
    gate_lr_mult: Optional[float] = field(default=None, metadata={"help": "See StructLoRAConfig.gate_lr_mult."})
    coordinator_lr_mult: Optional[float] = field(default=None, metadata={"help": "See StructLoRAConfig."})
    ib_warmup_steps: Optional[float] = field(default=None, metadata={"help": "See StructLoRAConfig."})
    modulation: Optional[str] = field(default=None, metadata={"help": "See StructLoRAConfig.modulation."})
    smooth_edges: Optional[str] = field(default=None, metadata={"help": "See StructLoRAConfig.smooth_edges."})
    keep_dead_layers: Optional[bool] = field(default=None, metadata={"help": "See StructLoRAConfig (all methods)."})


@dataclass
class TrainingArguments(transformers.TrainingArguments):
    """HF TrainingArguments with the paper's defaults and the recipe's extras."""

    output_dir: Optional[str] = field(default=None, metadata={"help": "Run directory."})
    learning_rate: float = 2e-4
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    warmup_steps: float = field(default=0.06, metadata={"help": "< 1: ratio of total steps (paper: 0.06)."})
    lr_scheduler_type: str = "cosine"
    logging_steps: float = 5
    save_strategy: str = "steps"
    save_steps: float = 50
    save_total_limit: Optional[int] = 2
    report_to: Optional[str] = field(default="tensorboard", metadata={"help": "tensorboard (default), wandb, none, ..."})
    remove_unused_columns: bool = False
    dataloader_num_workers: int = 0
    diagnostics_steps: int = field(default=10, metadata={"help": "Log StructLoRA diagnostics every N steps."})
    resume: str = field(default="none", metadata={"help": "none | auto (newest complete checkpoint) | a checkpoint dir."})
    run_eval: bool = field(default=True, metadata={"help": "Quick validation run at the end (EVAL=0 disables)."})
    plots: bool = field(default=True, metadata={"help": "Write diagnostic PNGs at the end."})

    def __post_init__(self) -> None:
        super().__post_init__()
        # --gradient_checkpointing (transformers' alias of activation_checkpointing): non-reentrant,
        # written out so run.json records it (StructLoRA refuses reentrant checkpointing).
        if self.activation_checkpointing and not self.activation_checkpointing_kwargs:
            self.activation_checkpointing_kwargs = self.gradient_checkpointing_kwargs = {"use_reentrant": False}


ALL_ARGS = (ModelArguments, DataArguments, StructLoRAArguments, TrainingArguments)


def _yaml_to_argv(path: Path, known: set[str]) -> list[str]:
    """Turn a flat YAML mapping into CLI tokens (CLI flags given later override them)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read YAML config ({e})") from e
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    argv: list[str] = []
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown option {key!r}")
        if value is None:
            continue
        if isinstance(value, (dict,)):
            argv += [f"--{key}", json.dumps(value)]
        elif isinstance(value, (list, tuple)):
            argv += [f"--{key}", *[str(v) for v in value]]
        else:
            argv += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return argv


def _split_config_flag(argv: Sequence[str]) -> tuple[Optional[Path], list[str]]:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    ns, rest = pre.parse_known_args(list(argv))
    return (Path(ns.config) if ns.config else None), rest


def _known_options(parser: transformers.HfArgumentParser) -> set[str]:
    return {a.dest for a in parser._actions if a.dest != "help"}


def parse_args(argv: Sequence[str], check_paths: bool = True, with_deepspeed: bool = True):
    """Parse (YAML then CLI) and validate. Returns (model, data, structlora, training) args.

    ``with_deepspeed=False`` drops the DeepSpeed file from TrainingArguments so the launcher
    process can validate without initializing torch.distributed (the file is still checked).
    """
    parser = transformers.HfArgumentParser(ALL_ARGS, exit_on_error=False)
    cfg_path, rest = _split_config_flag(argv)
    src = f"config {cfg_path}" if cfg_path else "command line"
    if cfg_path is not None and not cfg_path.is_file():
        raise ConfigError(f"--config {cfg_path}: file not found")
    tokens = (_yaml_to_argv(cfg_path, _known_options(parser)) if cfg_path else []) + rest
    ds_file = _pop_option(tokens, "deepspeed") if not with_deepspeed else None
    try:
        margs, dargs, sargs, targs, remaining = parser.parse_args_into_dataclasses(
            args=tokens, return_remaining_strings=True)
    except (argparse.ArgumentError, ValueError, TypeError) as e:
        raise ConfigError(f"{src}: {e}") from e
    if remaining:
        raise ConfigError(f"{src}: unknown arguments {remaining}")
    if ds_file is not None:
        targs.deepspeed = ds_file  # kept for the launcher; checked below, not initialized
    validate(margs, dargs, sargs, targs, check_paths=check_paths)
    return margs, dargs, sargs, targs


def _pop_option(tokens: list[str], name: str) -> Optional[str]:
    """Remove every `--name value` from tokens, returning the last value."""
    value, i = None, 0
    while i < len(tokens):
        if tokens[i] == f"--{name}" and i + 1 < len(tokens):
            value = tokens[i + 1]
            del tokens[i:i + 2]
        elif tokens[i].startswith(f"--{name}="):
            value = tokens.pop(i).split("=", 1)[1]
        else:
            i += 1
    return value


def _check_finite(obj: Any) -> None:
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name, None)
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{type(obj).__name__}.{f.name}={v}: must be a finite number")


def validate(margs: ModelArguments, dargs: DataArguments, sargs: StructLoRAArguments,
             targs: TrainingArguments, check_paths: bool = True) -> None:
    """Raise ConfigError naming the first bad value (called before anything is launched)."""
    for obj in (margs, dargs, sargs, targs):
        _check_finite(obj)
    if margs.method not in METHODS:
        raise ConfigError(f"method={margs.method!r}: expected one of {METHODS}")
    if margs.lora_r <= 0:
        raise ConfigError(f"lora_r={margs.lora_r}: must be a positive int")
    if margs.lora_alpha <= 0:
        raise ConfigError(f"lora_alpha={margs.lora_alpha}: must be > 0")
    if margs.lora_dropout is not None and not 0.0 <= margs.lora_dropout < 1.0:
        raise ConfigError(f"lora_dropout={margs.lora_dropout}: must be in [0, 1)")
    if margs.mm_projector_lr is not None and margs.mm_projector_lr <= 0:
        raise ConfigError(f"mm_projector_lr={margs.mm_projector_lr}: must be > 0")
    if targs.learning_rate <= 0:
        raise ConfigError(f"learning_rate={targs.learning_rate}: must be > 0")
    if not 0.0 < dargs.data_fraction <= 1.0:
        raise ConfigError(f"data_fraction={dargs.data_fraction}: must be in (0, 1]")
    if dargs.task is not None and dargs.task not in TASKS:
        raise ConfigError(f"task={dargs.task!r}: expected one of {TASKS}")
    if targs.diagnostics_steps <= 0:
        raise ConfigError(f"diagnostics_steps={targs.diagnostics_steps}: must be a positive int")
    if not targs.output_dir:
        raise ConfigError("output_dir is required")
    if margs.method == "structlora":
        build_structlora_config(margs, sargs, targs.seed)  # its own validation names the field
    _validate_memory_knobs(margs, targs)
    if check_paths:
        _validate_paths(margs, dargs, targs)


def _validate_memory_knobs(margs: ModelArguments, targs: TrainingArguments) -> None:
    """Attention backend, QLoRA and checkpointing: refused here, before any model is loaded."""
    from llava_structlora.modeling import ModelLoadError, check_attn_implementation, check_bits

    try:
        check_attn_implementation(margs.attn_implementation)
        check_bits(margs.bits)
    except ModelLoadError as e:
        raise ConfigError(str(e)) from e
    if margs.bits is not None and margs.method == "full":
        raise ConfigError(f"bits={margs.bits}: a quantized base cannot be fully fine-tuned; use an adapter method")
    kwargs = targs.activation_checkpointing_kwargs or {}
    if targs.activation_checkpointing and margs.method == "structlora" and kwargs.get("use_reentrant", False):
        raise ConfigError("gradient_checkpointing_kwargs use_reentrant=true: StructLoRA needs non-reentrant "
                          "activation checkpointing (its shared coordinator graph); drop the option")


def _validate_paths(margs: ModelArguments, dargs: DataArguments, targs: TrainingArguments) -> None:
    if not margs.model_name_or_path:
        raise ConfigError("model_name_or_path is required (a local Llava directory)")
    if not (Path(margs.model_name_or_path) / "config.json").is_file():
        raise ConfigError(f"model_name_or_path={margs.model_name_or_path}: no config.json there")
    if not dargs.data_path:
        raise ConfigError("data_path is required (LLaVA instruction JSON)")
    if not Path(dargs.data_path).is_file():
        raise ConfigError(f"data_path={dargs.data_path}: file not found")
    resume = targs.resume
    if resume not in ("none", "auto") and not Path(resume).is_dir():
        raise ConfigError(f"resume={resume!r}: expected none, auto or an existing checkpoint directory")
    ds = targs.deepspeed
    if isinstance(ds, str) and ds:
        try:
            stage = json.loads(Path(ds).read_text()).get("zero_optimization", {}).get("stage", 0)
        except (OSError, json.JSONDecodeError, AttributeError) as e:
            raise ConfigError(f"deepspeed={ds}: not a readable JSON file ({e})") from e
        if stage == 3 and margs.method == "structlora":
            raise ConfigError(f"deepspeed={ds}: ZeRO-3 partitions the adapter factors that StructLoRA's "
                              "coordinator reads across layers; use zero2.json or zero2_offload.json")


def build_structlora_config(margs: ModelArguments, sargs: StructLoRAArguments, seed: int):
    """StructLoRAConfig from the CLI dataclasses; its ValueError (naming the field) becomes ConfigError."""
    from llava_structlora.structlora import StructLoRAConfig

    kwargs = dict(r=margs.lora_r, alpha=margs.lora_alpha, dropout=margs.lora_dropout or 0.0,
                  targets=margs.targets, seed=seed, **dataclasses.asdict(sargs))
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # None: StructLoRAConfig's default
    try:
        return StructLoRAConfig(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from e


def to_jsonable(*objs: Any) -> dict[str, Any]:
    """Flat JSON view of the argument dataclasses (for run.json)."""
    out: dict[str, Any] = {}
    for obj in objs:
        d = obj.to_dict() if hasattr(obj, "to_dict") else dataclasses.asdict(obj)
        out[type(obj).__name__] = json.loads(json.dumps(d, default=str))
    return out


def env_flag(name: str, default: bool) -> bool:
    """Boolean env var (1/0/true/false); a garbled value is an error, not a silent default."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ConfigError(f"environment {name}={raw!r}: expected 0 or 1")
