"""The training configuration's public names, in one import path (nothing inside train/ imports this module).

    options.py     the four argument dataclasses and TrainConfig (the one parsed object handed down)
    cli.py         compose_argv / parse_config / parse_args: the only place options are parsed
    validation.py  every check, before a model, a dataset or a DeepSpeed launcher is touched
    identity.py    run.json's view of a run and the identity a resume must match

Every value is validated before anything is built, so a typo fails in a second with a message naming
the field (and the YAML file).
"""

from __future__ import annotations

from .cli import compose_argv, parse_args, parse_config
from .errors import ConfigError
from .identity import run_identity, to_jsonable
from .options import (
    ALL_ARGS,
    MIX_TASK,
    SHARED_KNOBS,
    TASKS,
    DataArguments,
    ModelArguments,
    StructLoRAArguments,
    TrainConfig,
    TrainingArguments,
    build_structlora_config,
    task_data_path,
    validation_tasks,
)
from .specs import METHODS, get_spec
from .validation import check_base_and_targets, data_sources, validate

__all__ = [
    "ALL_ARGS",
    "METHODS",
    "MIX_TASK",
    "SHARED_KNOBS",
    "TASKS",
    "ConfigError",
    "DataArguments",
    "ModelArguments",
    "StructLoRAArguments",
    "TrainConfig",
    "TrainingArguments",
    "build_structlora_config",
    "check_base_and_targets",
    "compose_argv",
    "data_sources",
    "get_spec",
    "parse_args",
    "parse_config",
    "run_identity",
    "task_data_path",
    "to_jsonable",
    "validate",
    "validation_tasks",
]
