"""The training options: four argument dataclasses and `TrainConfig`, the one parsed object handed down.

`cli.parse_config` fills them once (YAML + flags, precedence in cli.py) and validation.py checks them;
every consumer (launcher, method spec, model build, Trainer, run.json) reads the same `TrainConfig`.

StructLoRA's knobs are not mirrored by hand: `StructLoRAArguments` is generated from the fields of
`llava_structlora.structlora.config.StructLoRAConfig` (help from each field's `metadata["help"]`),
so every field is settable from the YAML and the CLI under its own name. The four knobs all adapter
methods share (r, alpha, dropout, targets) are `ModelArguments.lora_r/lora_alpha/lora_dropout/targets`
and the seed is `TrainingArguments.seed`; their defaults are StructLoRAConfig's. `TrainConfig.adapter` is
the StructLoRAConfig built from them, once: the method spec, the optimizer groups and the regularizer
get it from here, never from the model.

Our three dataclasses are frozen. `TrainingArguments` is transformers' own class, which the Trainer
sets up and adjusts itself; our code never writes to it after parsing.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import transformers

from llava_structlora.data.conversation import CONV_TEMPLATES, DEFAULT_CONV_TEMPLATE
from llava_structlora.evaluation.tasks import TASKS as EVAL_TASKS
from llava_structlora.structlora.config import TARGET_PRESETS, StructLoRAConfig

from .errors import ConfigError
from .specs import METHODS, MethodSpec, get_spec

# The tasks a run trains and validates on, each with its own scorer (evaluation/tasks.py); this order is the
# order of a `mix` run's sources (and so of its data).
TASKS = ("coco", "vqav2", "gqa")
assert set(TASKS) == set(EVAL_TASKS), "every evaluation task is a training task"
MIX_TASK = "mix"  # --task mix: the sources of data_path mixed (data/mixing.py), validated on every task of TASKS
# StructLoRAConfig field -> the CLI/YAML name of the knob every adapter method shares.
SHARED_KNOBS = {"r": "lora_r", "alpha": "lora_alpha", "dropout": "lora_dropout", "targets": "targets", "seed": "seed"}
_SL_DEFAULTS = {f.name: f.default for f in dataclasses.fields(StructLoRAConfig)}


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
        f"bool, Optional[...] or list[...] (train/options.py generates the CLI from the fields)"
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
    cls = dataclasses.make_dataclass("StructLoRAArguments", specs, frozen=True)
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


def build_structlora_config(margs: ModelArguments, sargs: Any, seed: int) -> StructLoRAConfig:
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


@dataclass(frozen=True)
class TrainConfig:
    """One training run's configuration, parsed once (cli.parse_config) and handed down unchanged.

    Attributes:
        adapter: the StructLoRAConfig built from model + structlora + seed (every adapter method's shared knobs).
        given: the option names the YAML, the flags or a launcher set explicitly (the rest are defaults).
        source: where the options came from ("config <file>" or "command line"), for messages.
    """

    model: ModelArguments
    data: DataArguments
    structlora: Any  # StructLoRAArguments (a generated class)
    training: TrainingArguments
    adapter: StructLoRAConfig
    given: frozenset[str] = frozenset()
    source: str = "command line"

    @property
    def spec(self) -> MethodSpec:
        return get_spec(self.model.method)

    @property
    def args(self) -> tuple:
        """(model, data, structlora, training): the four argument dataclasses."""
        return self.model, self.data, self.structlora, self.training

    @property
    def run_dir(self) -> Path:
        return Path(self.training.output_dir)


def task_data_path(data_root: str | Path, task: str) -> str:
    """DATA_ROOT/<task>/llava_train.json; for `mix` the three tasks' files, comma-separated (one mixture)."""
    tasks = TASKS if task == MIX_TASK else (task,)
    return ",".join(str(Path(data_root) / t / "llava_train.json") for t in tasks)


def validation_tasks(task: str) -> tuple[str, ...]:
    """The tasks a run of `task` is validated on (each with its own scorer)."""
    return TASKS if task == MIX_TASK else (task,)
