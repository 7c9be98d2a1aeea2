"""Training configuration: four dataclasses and their validation.

They are filled from a YAML file and/or the command line by cli.py (`parse_args`, `compose_argv`: the
precedence of defaults, YAML, flags and a launcher's overrides); identity.py records a run's
arguments (run.json, the identity a resume must match). All three stay importable from here.

StructLoRA's knobs are not mirrored by hand: `StructLoRAArguments` is generated from the fields of
`llava_structlora.structlora.config.StructLoRAConfig` (help from each field's `metadata["help"]`),
so every field is settable from the YAML and the CLI under its own name. The four knobs all adapter
methods share (r, alpha, dropout, targets) are `ModelArguments.lora_r/lora_alpha/lora_dropout/targets`
and the seed is `TrainingArguments.seed`; their defaults are StructLoRAConfig's. Range checks live in
StructLoRAConfig.validate only. Every value is validated before a model, a dataset or a DeepSpeed
launcher is touched, so a typo fails in a second with a message naming the field (and the YAML file).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import transformers

from llava_structlora.data.conversation import CONV_TEMPLATES, DEFAULT_CONV_TEMPLATE, conv_system
from llava_structlora.structlora.config import TARGET_PRESETS, StructLoRAConfig

from .errors import ConfigError
from .identity import run_identity, to_jsonable  # noqa: F401  (public path)
from .specs import METHODS, get_spec

TASKS = ("coco", "vqav2", "gqa")
MIX_TASK = "mix"  # --task mix: the sources of data_path mixed (data/mixing.py), validated on every task of TASKS
# StructLoRAConfig field -> the CLI/YAML name of the knob every adapter method shares.
SHARED_KNOBS = {"r": "lora_r", "alpha": "lora_alpha", "dropout": "lora_dropout", "targets": "targets", "seed": "seed"}
_SL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(StructLoRAConfig)}


@dataclass
class ModelArguments:
    """Which base model and which fine-tuning method (shared by all methods for fair comparisons)."""

    model_name_or_path: Optional[str] = field(
        default=None, metadata={"help": "HF Llava directory (save_pretrained layout)."}
    )
    method: str = field(default="structlora", metadata={"help": "|".join(METHODS)})
    lora_r: int = field(default=_SL_DEFAULTS["r"], metadata={"help": "Adapter rank r (all adapter methods)."})
    lora_alpha: float = field(
        default=_SL_DEFAULTS["alpha"], metadata={"help": "Adapter scale alpha (update scale alpha / r)."}
    )
    lora_dropout: Optional[float] = field(
        default=None, metadata={"help": "Adapter input dropout; default 0 (0.1 for --method lora_dropout)."}
    )
    targets: str = field(
        default=_SL_DEFAULTS["targets"],
        metadata={"help": "Target preset (qv|qkv|qkvo) or one regex over module names."},
    )
    tune_mm_projector: bool = field(default=False, metadata={"help": "Also train the multimodal projector in full."})
    mm_projector_lr: Optional[float] = field(default=None, metadata={"help": "Projector lr (default: learning_rate)."})
    adalora_init_r: int = field(default=12, metadata={"help": "AdaLoRA initial rank (pruned to lora_r)."})
    attn_implementation: Optional[str] = field(
        default=None,
        metadata={"help": "Attention backend: sdpa|eager|flash_attention_2 (default: transformers' choice, sdpa)."},
    )
    bits: Optional[int] = field(
        default=None,
        metadata={"help": "QLoRA: load the base in 4 or 8 bit (bitsandbytes, CUDA); adapters stay fp32. Default: no."},
    )


@dataclass
class DataArguments:
    """Training data (LLaVA instruction JSON) and the quick validation run at the end."""

    data_path: Optional[str] = field(
        default=None,
        metadata={
            "help": "LLaVA instruction JSON (DATA_ROOT/<task>/llava_train.json); several: a.json,b.json (mixed)."
        },
    )
    data_ratios: Optional[str] = field(
        default=None,
        metadata={
            "help": "Sampling ratios of the data_path sources, e.g. 0.5,0.3,0.2 "
            "(relative weights; default: concatenate)."
        },
    )
    mix_size: Optional[int] = field(
        default=None,
        metadata={
            "help": "Samples in the mixture (default: the sources' total records); each source gets ratio * mix_size."
        },
    )
    image_folder: Optional[str] = field(
        default=None, metadata={"help": "Image root (default: the task manifest's image_folder)."}
    )
    model_max_length: Optional[int] = field(
        default=None, metadata={"help": "Truncation length (default: tokenizer's)."}
    )
    conv_template: str = field(
        default=DEFAULT_CONV_TEMPLATE,
        metadata={
            "help": f"Conversation format ({'|'.join(CONV_TEMPLATES)}): vicuna_v1 = LLaVA-1.5's, with its system "
            "prompt; vicuna_v1_nosys = the same without (the toy base). Recorded in run.json; evaluation, "
            "merge and release default to it."
        },
    )
    data_fraction: float = field(default=1.0, metadata={"help": "Fraction of training records used (low-data tables)."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Hard cap on training records."})
    task: Optional[str] = field(
        default=None,
        metadata={"help": "coco|vqav2|gqa: selects the validation scorer; mix: validated on each of the three."},
    )
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
    raise TypeError(
        f"StructLoRAConfig.{name}: type {hint!r} cannot be set from YAML/CLI; use int, float, str, "
        f"bool, Optional[...] or list[...] (train/config.py generates the CLI from the fields)"
    )


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
    report_to: Optional[str] = field(
        default="tensorboard", metadata={"help": "tensorboard (default), wandb, none, ..."}
    )
    remove_unused_columns: bool = False
    dataloader_num_workers: int = 0
    diagnostics_steps: int = field(default=10, metadata={"help": "Log StructLoRA diagnostics every N steps."})
    resume: str = field(
        default="none", metadata={"help": "none | auto (newest complete checkpoint) | a checkpoint dir."}
    )
    run_eval: bool = field(default=True, metadata={"help": "Quick validation run at the end (EVAL=0 disables)."})
    plots: bool = field(default=True, metadata={"help": "Write diagnostic PNGs at the end."})

    def __post_init__(self) -> None:
        super().__post_init__()
        # --gradient_checkpointing (transformers' alias of activation_checkpointing): non-reentrant,
        # written out so run.json records it (StructLoRA refuses reentrant checkpointing).
        if self.activation_checkpointing and not self.activation_checkpointing_kwargs:
            self.activation_checkpointing_kwargs = self.gradient_checkpointing_kwargs = {"use_reentrant": False}


ALL_ARGS = (ModelArguments, DataArguments, StructLoRAArguments, TrainingArguments)


def _check_finite(obj: Any) -> None:
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name, None)
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{type(obj).__name__}.{f.name}={v}: must be a finite number")


def validate(
    margs: ModelArguments,
    dargs: DataArguments,
    sargs: StructLoRAArguments,
    targs: TrainingArguments,
    check_paths: bool = True,
) -> None:
    """Raise ConfigError naming the first bad value (called before anything is launched).

    The adapter knobs (rank, alpha, dropout, targets and every StructLoRA field) are checked by
    StructLoRAConfig.validate, for every method: the one place their ranges are written.
    """
    for obj in (margs, dargs, sargs, targs):
        _check_finite(obj)
    spec = get_spec(margs.method)  # names the known methods
    build_structlora_config(margs, sargs, targs.seed)
    if margs.mm_projector_lr is not None and margs.mm_projector_lr <= 0:
        raise ConfigError(f"mm_projector_lr={margs.mm_projector_lr}: must be > 0")
    if targs.learning_rate <= 0:
        raise ConfigError(f"learning_rate={targs.learning_rate}: must be > 0")
    if not 0.0 < dargs.data_fraction <= 1.0:
        raise ConfigError(f"data_fraction={dargs.data_fraction}: must be in (0, 1]")
    try:
        conv_system(dargs.conv_template)
        data_sources(dargs)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if dargs.mix_size is not None and dargs.mix_size < 1:
        raise ConfigError(f"mix_size={dargs.mix_size}: must be a positive number of samples")
    if dargs.task is not None and dargs.task not in (*TASKS, MIX_TASK):
        raise ConfigError(f"task={dargs.task!r}: expected one of {(*TASKS, MIX_TASK)}")
    if targs.diagnostics_steps <= 0:
        raise ConfigError(f"diagnostics_steps={targs.diagnostics_steps}: must be a positive int")
    if not targs.output_dir:
        raise ConfigError("output_dir is required")
    stage = _zero_stage(targs.deepspeed) if check_paths else None
    spec.check(margs, targs, stage)  # method-specific limits
    _validate_sizes(dargs, targs)
    _validate_memory_knobs(margs, stage)
    if check_paths:
        _validate_paths(margs, dargs, targs)
        check_base_and_targets(margs, sargs, targs.seed)


# Integer knobs that must be >= 1: a 0 is otherwise noticed only after the model is built (batch size)
# or after the whole training run (the validation run's batch size).
_POSITIVE = (
    ("DataArguments", "eval_batch_size"),
    ("DataArguments", "model_max_length"),
    ("DataArguments", "max_train_samples"),
    ("TrainingArguments", "per_device_train_batch_size"),
    ("TrainingArguments", "gradient_accumulation_steps"),
)


def _validate_sizes(dargs: DataArguments, targs: TrainingArguments) -> None:
    for cls, name in _POSITIVE:
        value = getattr(dargs if cls == "DataArguments" else targs, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{cls}.{name}={value!r}: must be a positive int")


WEIGHT_GLOBS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin")


def check_base_and_targets(margs: ModelArguments, sargs: StructLoRAArguments, seed: int) -> None:
    """Before any model is built: the base has weights, and the targets match its modules.

    The module names come from the base's config.json alone: the model is instantiated on the meta
    device (no memory, about a second even for 7B), so a target regex matching nothing fails here
    instead of after minutes of loading.
    """
    base = Path(margs.model_name_or_path)
    if not any(any(base.glob(g)) for g in WEIGHT_GLOBS):
        raise ConfigError(
            f"model_name_or_path={base}: config.json but no weights there "
            f"(expected model.safetensors or shards); is the download complete?"
        )
    if get_spec(margs.method).full_model:  # no adapter targets
        return
    from llava_structlora.modeling import ModelLoadError, load_config, meta_model
    from llava_structlora.structlora.targets import resolve_target_modules

    try:
        model = meta_model(load_config(base))
    except (ModelLoadError, ValueError, OSError) as e:
        raise ConfigError(f"model_name_or_path={base}: cannot read its config.json ({e})") from e
    try:
        resolve_target_modules(model, build_structlora_config(margs, sargs, seed))
    except ValueError as e:
        raise ConfigError(f"targets={margs.targets!r}: {e} (module names look like {_example_linear(model)!r})") from e


def _example_linear(model: Any) -> str:
    from torch import nn

    return next((n for n, m in model.named_modules() if isinstance(m, nn.Linear) and "layers." in n), "")


def _validate_memory_knobs(margs: ModelArguments, zero_stage: Optional[int]) -> None:
    """Attention backend and QLoRA (and QLoRA under ZeRO-3): refused here, before any model is loaded."""
    from llava_structlora.modeling import ModelLoadError, check_attn_implementation, check_bits

    from .zero3 import zero3_refusal

    try:
        check_attn_implementation(margs.attn_implementation)
        check_bits(margs.bits)
    except ModelLoadError as e:
        raise ConfigError(str(e)) from e
    refusal = zero3_refusal(margs.bits) if zero_stage == 3 else None
    if refusal:
        raise ConfigError(refusal)


def _validate_paths(margs: ModelArguments, dargs: DataArguments, targs: TrainingArguments) -> None:
    if not margs.model_name_or_path:
        raise ConfigError("model_name_or_path is required (a local Llava directory)")
    if not (Path(margs.model_name_or_path) / "config.json").is_file():
        raise ConfigError(f"model_name_or_path={margs.model_name_or_path}: no config.json there")
    if not dargs.data_path:
        raise ConfigError("data_path is required (LLaVA instruction JSON)")
    for source in data_sources(dargs):
        if not Path(source.path).is_file():
            raise ConfigError(f"data_path={dargs.data_path}: {source.path}: file not found")
    resume = targs.resume
    if resume not in ("none", "auto") and not Path(resume).is_dir():
        raise ConfigError(f"resume={resume!r}: expected none, auto or an existing checkpoint directory")


def _zero_stage(ds: Any) -> Optional[int]:
    """The ZeRO stage of a DeepSpeed config file (None without one); ConfigError when it cannot be read."""
    if not (isinstance(ds, str) and ds):
        return None
    try:
        return int(json.loads(Path(ds).read_text()).get("zero_optimization", {}).get("stage", 0))
    except (OSError, json.JSONDecodeError, AttributeError, TypeError, ValueError) as e:
        raise ConfigError(f"deepspeed={ds}: not a readable JSON file ({e})") from e


def task_data_path(data_root: str | Path, task: str) -> str:
    """DATA_ROOT/<task>/llava_train.json; for `mix` the three tasks' files, comma-separated (one mixture)."""
    tasks = TASKS if task == MIX_TASK else (task,)
    return ",".join(str(Path(data_root) / t / "llava_train.json") for t in tasks)


def validation_tasks(task: str) -> tuple[str, ...]:
    """The tasks a run of `task` is validated on (each with its own scorer)."""
    return TASKS if task == MIX_TASK else (task,)


def data_sources(dargs: DataArguments) -> list:
    """The training sources of data_path/data_ratios (DataMixError, a ValueError, names a bad spec)."""
    from llava_structlora.data.mixing import parse_sources

    if not dargs.data_path:
        if dargs.data_ratios:
            raise ConfigError("data_ratios given without data_path")
        return []
    return parse_sources(dargs.data_path, dargs.data_ratios)


def build_structlora_config(margs: ModelArguments, sargs: StructLoRAArguments, seed: int) -> StructLoRAConfig:
    """StructLoRAConfig from the CLI dataclasses; its ValueError becomes a ConfigError naming the CLI option."""
    targets = margs.targets if margs.targets in TARGET_PRESETS else [margs.targets]  # a preset or one regex
    kwargs = dict(
        r=margs.lora_r,
        alpha=margs.lora_alpha,
        dropout=margs.lora_dropout or 0.0,
        targets=targets,
        seed=seed,
        **dataclasses.asdict(sargs),
    )
    try:
        return StructLoRAConfig(**kwargs)
    except (ValueError, TypeError) as e:
        msg = str(e)
        for sl_name, cli_name in SHARED_KNOBS.items():
            msg = msg.replace(f"StructLoRAConfig.{sl_name}=", f"{cli_name}=")
        raise ConfigError(msg) from e


def __getattr__(name: str) -> Any:
    """`parse_args` / `compose_argv` from this module's path: they live in cli.py, which imports this one."""
    if name in ("parse_args", "compose_argv"):
        from . import cli

        return getattr(cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
