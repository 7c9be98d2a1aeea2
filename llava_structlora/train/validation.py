"""Validation of a parsed `TrainConfig`, before a model, a dataset or a DeepSpeed launcher is touched.

`check_values` needs nothing but the config (a typo fails in a second with a message naming the field and
the YAML file); `check_paths` also reads the model's config.json, the data files and the DeepSpeed file,
and matches the targets against the base's module names on the meta device. Range checks of the adapter
knobs live in StructLoRAConfig.validate only (run when `TrainConfig.adapter` is built).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Optional

from torch import nn

from llava_structlora.data.conversation import conv_system
from llava_structlora.data.mixing import parse_sources
from llava_structlora.evaluation.run import check_split
from llava_structlora.evaluation.tasks import TASKS as EVAL_TASKS
from llava_structlora.modeling import (
    ModelLoadError,
    check_attn_implementation,
    check_bits,
    load_config,
    meta_model,
)
from llava_structlora.structlora.targets import resolve_target_modules

from .errors import ConfigError
from .options import MIX_TASK, TASKS, DataArguments, TrainConfig, validation_tasks
from .zero3 import zero3_refusal

# Integer knobs that must be >= 1: a 0 is otherwise noticed only after the model is built (batch size)
# or after the whole training run (the validation run's batch size).
_POSITIVE = (
    ("data", "eval_batch_size"),
    ("data", "model_max_length"),
    ("data", "max_train_samples"),
    ("training", "per_device_train_batch_size"),
    ("training", "gradient_accumulation_steps"),
)
# StructLoRAConfig fields every adapter method uses (the target resolver's): not refused for the baselines.
SHARED_BY_ALL_METHODS = frozenset({"keep_dead_layers"})
WEIGHT_GLOBS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin")


def data_sources(dargs: DataArguments) -> list:
    """The training sources of data_path/data_ratios (DataMixError, a ValueError, names a bad spec)."""
    if not dargs.data_path:
        if dargs.data_ratios:
            raise ConfigError("data_ratios given without data_path")
        return []
    return parse_sources(dargs.data_path, dargs.data_ratios)


def check_finite(obj: Any) -> None:
    """NaN/inf slip through every `<` check, so they are refused first (one argument dataclass)."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name, None)
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{type(obj).__name__}.{f.name}={v}: must be a finite number")


def check_values(cfg: TrainConfig) -> None:
    """Raise ConfigError naming the first bad value (no file is read except the DeepSpeed config's stage)."""
    margs, dargs, targs = cfg.model, cfg.data, cfg.training
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
    if targs.max_steps == 0 or (targs.max_steps < 0 and not targs.num_train_epochs > 0):
        raise ConfigError(
            f"max_steps={targs.max_steps}, num_train_epochs={targs.num_train_epochs}: the run would train 0 steps "
            "and export an untrained adapter; set max_steps > 0 or num_train_epochs > 0"
        )
    check_ignored(cfg)
    for part, name in _POSITIVE:
        value = getattr(getattr(cfg, part), name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            cls = type(getattr(cfg, part)).__name__
            raise ConfigError(f"{cls}.{name}={value!r}: must be a positive int")


def check_ignored(cfg: TrainConfig) -> None:
    """Refuse options that would do nothing: a StructLoRA knob for another method, a projector lr without a tuned
    projector. Refused rather than warned: run.json would record a setting the weights were not trained with."""
    margs = cfg.model
    if margs.mm_projector_lr is not None and not margs.tune_mm_projector:
        raise ConfigError(
            f"mm_projector_lr={margs.mm_projector_lr} without tune_mm_projector: the projector stays frozen, so its "
            "lr does nothing; add --tune_mm_projector true or drop mm_projector_lr"
        )
    if cfg.spec.name == "structlora":
        return
    defaults = {f.name: f.default for f in dataclasses.fields(cfg.structlora)}
    ignored = sorted(
        name
        for name in cfg.given & set(defaults)
        if name not in SHARED_BY_ALL_METHODS and getattr(cfg.structlora, name) != defaults[name]
    )
    if ignored:
        values = ", ".join(f"{n}={getattr(cfg.structlora, n)!r}" for n in ignored)
        raise ConfigError(
            f"{values}: StructLoRA option(s) given to method={cfg.model.method}, which ignores them; drop them or "
            "use --method structlora"
        )


def check_eval_inputs(data_root: Optional[str], tasks: tuple[str, ...], split: str) -> None:
    """Before training: the validation run will find its question file (and references of the same split)."""
    if not data_root:
        raise ConfigError("data_root is required for the validation run (run_eval / EVAL=1)")
    for name in tasks:
        spec = EVAL_TASKS[name]
        try:
            check_split(spec, Path(data_root), split, option="eval_split")
            refs = spec.references(Path(data_root), split)
            if spec.has_answers(refs):
                qfile = spec.questions_jsonl(Path(data_root), split)
                ids = [json.loads(line)["question_id"] for line in qfile.read_text().splitlines() if line.strip()]
                spec.check_questions(ids, qfile, refs)
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(f"validation data of task {name}: {e}") from e


def check_method(cfg: TrainConfig, zero_stage: Optional[int]) -> None:
    """The method's own limits, the attention backend and QLoRA (also under ZeRO-3)."""
    cfg.spec.check(cfg.model, cfg.training, zero_stage)
    try:
        check_attn_implementation(cfg.model.attn_implementation)
        check_bits(cfg.model.bits)
    except ModelLoadError as e:
        raise ConfigError(str(e)) from e
    refusal = zero3_refusal(cfg.model.bits) if zero_stage == 3 else None
    if refusal:
        raise ConfigError(refusal)


def check_paths(cfg: TrainConfig) -> None:
    """The model, the data and the resume checkpoint exist; the base has weights and the targets match it; the
    validation run's inputs exist (when this process runs it)."""
    margs, dargs, targs = cfg.model, cfg.data, cfg.training
    if targs.run_eval and dargs.task:
        check_eval_inputs(dargs.data_root, validation_tasks(dargs.task), dargs.eval_split)
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
    check_base_and_targets(cfg)


def check_base_and_targets(cfg: TrainConfig) -> None:
    """Before any model is built: the base has weights, and the targets match its modules.

    The module names come from the base's config.json alone: the model is instantiated on the meta
    device (no memory, about a second even for 7B), so a target regex matching nothing fails here
    instead of after minutes of loading.
    """
    base = Path(cfg.model.model_name_or_path)
    if not any(any(base.glob(g)) for g in WEIGHT_GLOBS):
        raise ConfigError(
            f"model_name_or_path={base}: config.json but no weights there "
            f"(expected model.safetensors or shards); is the download complete?"
        )
    if cfg.spec.full_model:  # no adapter targets
        return
    try:
        model = meta_model(load_config(base))
    except (ModelLoadError, ValueError, OSError) as e:
        raise ConfigError(f"model_name_or_path={base}: cannot read its config.json ({e})") from e
    try:
        resolve_target_modules(model, cfg.adapter)
    except ValueError as e:
        example = next((n for n, m in model.named_modules() if isinstance(m, nn.Linear) and "layers." in n), "")
        raise ConfigError(f"targets={cfg.model.targets!r}: {e} (module names look like {example!r})") from e


def zero_stage(ds: Any) -> Optional[int]:
    """The ZeRO stage of a DeepSpeed config file (None without one); ConfigError when it cannot be read."""
    if not (isinstance(ds, str) and ds):
        return None
    try:
        return int(json.loads(Path(ds).read_text()).get("zero_optimization", {}).get("stage", 0))
    except (OSError, json.JSONDecodeError, AttributeError, TypeError, ValueError) as e:
        raise ConfigError(f"deepspeed={ds}: not a readable JSON file ({e})") from e


def check_files(cfg: TrainConfig) -> None:
    """What needs the files: the method's limits under the DeepSpeed config's ZeRO stage, then the paths."""
    check_method(cfg, zero_stage(cfg.training.deepspeed))
    check_paths(cfg)


def validate(cfg: TrainConfig, with_paths: bool = True) -> None:
    """Every check, in the order the messages are most useful (values first, then files)."""
    check_values(cfg)
    if with_paths:
        check_files(cfg)
    else:
        check_method(cfg, None)
