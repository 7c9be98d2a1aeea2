"""Training configuration: four dataclasses, parsed from a YAML file and/or the command line.

Precedence, lowest to highest: dataclass default < `defaults` given by a launcher (the recipe layer's
paths) < YAML (`--config recipe.yaml`) < command-line flags < `overrides` (the recipe layer's
environment variables, only those that are set). `compose_argv` turns that into one argv, which the
launcher parses itself and hands on unchanged to the training processes.

StructLoRA's knobs are not mirrored by hand: `StructLoRAArguments` is generated from the fields of
`llava_structlora.structlora.config.StructLoRAConfig` (help from each field's `metadata["help"]`),
so every field is settable from the YAML and the CLI under its own name. The four knobs all adapter
methods share (r, alpha, dropout, targets) are `ModelArguments.lora_r/lora_alpha/lora_dropout/targets`
and the seed is `TrainingArguments.seed`; their defaults are StructLoRAConfig's. Range checks live in
StructLoRAConfig.validate only. Every value is validated before a model, a dataset or a DeepSpeed
launcher is touched, so a typo fails in a second with a message naming the field (and the YAML file).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import transformers
import yaml

from llava_structlora.structlora.config import TARGET_PRESETS, StructLoRAConfig

METHODS = ("structlora", "lora", "dora", "adalora", "lora_dropout", "full")
TASKS = ("coco", "vqav2", "gqa")
# StructLoRAConfig field -> the CLI/YAML name of the knob every adapter method shares.
SHARED_KNOBS = {"r": "lora_r", "alpha": "lora_alpha", "dropout": "lora_dropout", "targets": "targets",
                "seed": "seed"}
_SL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(StructLoRAConfig)}


class ConfigError(ValueError):
    """A missing, garbled or inconsistent configuration value (raised before launch)."""


@dataclass
class ModelArguments:
    """Which base model and which fine-tuning method (shared by all methods for fair comparisons)."""

    model_name_or_path: Optional[str] = field(default=None, metadata={"help": "HF Llava directory (save_pretrained layout)."})
    method: str = field(default="structlora", metadata={"help": "|".join(METHODS)})
    lora_r: int = field(default=_SL_DEFAULTS["r"], metadata={"help": "Adapter rank r (all adapter methods)."})
    lora_alpha: float = field(default=_SL_DEFAULTS["alpha"],
                              metadata={"help": "Adapter scale alpha (update scale alpha / r)."})
    lora_dropout: Optional[float] = field(default=None, metadata={"help": "Adapter input dropout; default 0 (0.1 for --method lora_dropout)."})
    targets: str = field(default=_SL_DEFAULTS["targets"], metadata={"help": "Target preset (qv|qkv|qkvo) or one regex over module names."})
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


def _cli_type(name: str, hint: Any) -> Any:
    """The argparse-able type of a StructLoRAConfig field (HfArgumentParser handles these)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (int, float, str, bool):
        return hint
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and inner[0] in (int, float, str, bool):
            return Optional[inner[0]]
    if origin in (list, tuple) and len(args) >= 1 and args[0] in (int, float, str):
        return list[args[0]]
    raise TypeError(f"StructLoRAConfig.{name}: type {hint!r} cannot be set from YAML/CLI; use int, float, str, "
                    f"bool, Optional[...] or list[...] (train/config.py generates the CLI from the fields)")


def _structlora_arguments() -> type:
    """StructLoRAArguments: one CLI/YAML option per StructLoRAConfig field (minus SHARED_KNOBS)."""
    hints = typing.get_type_hints(StructLoRAConfig)
    specs = []
    for f in dataclasses.fields(StructLoRAConfig):
        if f.name in SHARED_KNOBS or not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        tp = _cli_type(f.name, hints[f.name])
        if isinstance(default, tuple):
            default = list(default)
        help_text = f.metadata.get("help") or f"StructLoRAConfig.{f.name} (docs/structlora.md)."
        kw = {"default_factory": (lambda d=default: list(d))} if isinstance(default, list) else {"default": default}
        specs.append((f.name, tp, field(metadata={"help": help_text}, **kw)))
    cls = dataclasses.make_dataclass("StructLoRAArguments", specs)
    cls.__module__ = __name__
    cls.__doc__ = "StructLoRA knobs, generated from StructLoRAConfig's fields (same names, same defaults)."
    return cls


StructLoRAArguments = _structlora_arguments()


@dataclass
class TrainingArguments(transformers.TrainingArguments):
    """HF TrainingArguments with the paper's defaults and the recipe's extras."""

    output_dir: Optional[str] = field(default=None, metadata={"help": "Run directory."})
    seed: int = field(default=_SL_DEFAULTS["seed"], metadata={"help": "Seed of everything (adapter init, data order)."})
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


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read YAML config ({e})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    return data


def _to_tokens(values: Mapping[str, Any], known: Optional[set[str]] = None, src: str = "") -> list[str]:
    """CLI tokens for option: value pairs (None values are skipped; later tokens override earlier ones)."""
    argv: list[str] = []
    for key, value in values.items():
        if known is not None and key not in known:
            raise ConfigError(f"{src}: unknown option {key!r}")
        if value is None:
            continue
        if isinstance(value, dict):
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


def _parser() -> transformers.HfArgumentParser:
    return transformers.HfArgumentParser(ALL_ARGS, exit_on_error=False)


def _known_options(parser: transformers.HfArgumentParser) -> set[str]:
    return {a.dest for a in parser._actions if a.dest != "help"}


def compose_argv(cli: Sequence[str], config: Optional[Path] = None, defaults: Optional[Mapping[str, Any]] = None,
                 overrides: Optional[Mapping[str, Any]] = None) -> list[str]:
    """One argv whose parse gives: dataclass default < defaults < YAML < cli < overrides.

    Args:
        cli: the user's flags (may hold its own `--config FILE`, which then replaces `config`).
        config: the launcher's YAML recipe.
        defaults: option -> value the launcher fills in when the YAML does not set it (paths, resume=auto).
        overrides: option -> value that beat everything (environment variables that are set); None = skip.
    """
    cli_config, rest = _split_config_flag(cli)
    config = cli_config or config
    yaml_keys = set(_read_yaml(config)) if config is not None and config.is_file() else set()
    known = _known_options(_parser())
    low = {k: v for k, v in (defaults or {}).items() if k not in yaml_keys and k not in (overrides or {})}
    return ((["--config", str(config)] if config else []) + _to_tokens(low, known, "defaults") + rest
            + _to_tokens(overrides or {}, known, "overrides"))


def parse_args(argv: Sequence[str], check_paths: bool = True, with_deepspeed: bool = True):
    """Parse (YAML then CLI) and validate. Returns (model, data, structlora, training) args.

    Args:
        argv: CLI tokens, optionally with `--config recipe.yaml` (its values come first, flags override them).
        check_paths: also check that the model, data and DeepSpeed files exist.
        with_deepspeed: False drops the DeepSpeed file from TrainingArguments so the launcher process can
            validate without initializing torch.distributed (the file is still checked).
    """
    parser = _parser()
    cfg_path, rest = _split_config_flag(argv)
    src = f"config {cfg_path}" if cfg_path else "command line"
    if cfg_path is not None and not cfg_path.is_file():
        raise ConfigError(f"--config {cfg_path}: file not found")
    yaml_tokens = _to_tokens(_read_yaml(cfg_path), _known_options(parser), str(cfg_path)) if cfg_path else []
    tokens = yaml_tokens + rest
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
    """Raise ConfigError naming the first bad value (called before anything is launched).

    The adapter knobs (rank, alpha, dropout, targets and every StructLoRA field) are checked by
    StructLoRAConfig.validate, for every method: the one place their ranges are written.
    """
    for obj in (margs, dargs, sargs, targs):
        _check_finite(obj)
    if margs.method not in METHODS:
        raise ConfigError(f"method={margs.method!r}: expected one of {METHODS}")
    build_structlora_config(margs, sargs, targs.seed)
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


def build_structlora_config(margs: ModelArguments, sargs: StructLoRAArguments, seed: int) -> StructLoRAConfig:
    """StructLoRAConfig from the CLI dataclasses; its ValueError becomes a ConfigError naming the CLI option."""
    targets = margs.targets if margs.targets in TARGET_PRESETS else [margs.targets]  # a preset or one regex
    kwargs = dict(r=margs.lora_r, alpha=margs.lora_alpha, dropout=margs.lora_dropout or 0.0, targets=targets,
                  seed=seed, **dataclasses.asdict(sargs))
    try:
        return StructLoRAConfig(**kwargs)
    except (ValueError, TypeError) as e:
        msg = str(e)
        for sl_name, cli_name in SHARED_KNOBS.items():
            msg = msg.replace(f"StructLoRAConfig.{sl_name}=", f"{cli_name}=")
        raise ConfigError(msg) from e


def to_jsonable(*objs: Any) -> dict[str, Any]:
    """Flat JSON view of the argument dataclasses (for run.json)."""
    out: dict[str, Any] = {}
    for obj in objs:
        d = obj.to_dict() if hasattr(obj, "to_dict") else dataclasses.asdict(obj)
        out[type(obj).__name__] = json.loads(json.dumps(d, default=str))
    return out


# What a resumed run must share with the run that wrote the checkpoint (schedule length, logging and
# evaluation knobs may change). Everything of ModelArguments and StructLoRAArguments counts.
_IDENTITY_DATA = ("data_path", "image_folder", "model_max_length", "data_fraction", "max_train_samples", "task")
_IDENTITY_TRAINING = ("seed", "per_device_train_batch_size", "gradient_accumulation_steps", "weight_decay")


def run_identity(margs: ModelArguments, dargs: DataArguments, sargs: StructLoRAArguments,
                 targs: TrainingArguments) -> dict[str, Any]:
    """The knobs that define what a run trains (flat option -> value; paths resolved)."""
    ident: dict[str, Any] = dict(dataclasses.asdict(margs))
    ident.update(dataclasses.asdict(sargs))
    ident.update({k: getattr(dargs, k) for k in _IDENTITY_DATA})
    ident.update({k: getattr(targs, k) for k in _IDENTITY_TRAINING})
    for key in ("model_name_or_path", "data_path", "image_folder"):
        if ident.get(key):
            ident[key] = str(Path(ident[key]).resolve())
    return json.loads(json.dumps(ident, default=str))
