"""From argv (and a YAML recipe) to the four validated argument dataclasses of config.py.

Precedence, lowest to highest: dataclass default < `defaults` given by a launcher (the recipe layer's
paths) < YAML (`--config recipe.yaml`) < command-line flags < `overrides` (the recipe layer's
environment variables, only those that are set). `compose_argv` turns that into one argv, which the
launcher parses itself and hands on unchanged to the training processes; `parse_args` reads it back
(YAML tokens first, so later flags win) and validates every value before anything is launched.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import transformers

from .argv import pop_option, read_yaml, split_config_flag, to_tokens
from .config import ALL_ARGS, validate
from .errors import ConfigError


def _parser() -> transformers.HfArgumentParser:
    return transformers.HfArgumentParser(ALL_ARGS, exit_on_error=False)


def _known_options(parser: transformers.HfArgumentParser) -> set[str]:
    return {a.dest for a in parser._actions if a.dest != "help"}


def compose_argv(
    cli: Sequence[str],
    config: Optional[Path] = None,
    defaults: Optional[Mapping[str, Any]] = None,
    overrides: Optional[Mapping[str, Any]] = None,
) -> list[str]:
    """One argv whose parse gives: dataclass default < defaults < YAML < cli < overrides.

    Args:
        cli: the user's flags (may hold its own `--config FILE`, which then replaces `config`).
        config: the launcher's YAML recipe.
        defaults: option -> value the launcher fills in when the YAML does not set it (paths, resume=auto).
        overrides: option -> value that beat everything (environment variables that are set); None = skip.
    """
    cli_config, rest = split_config_flag(cli)
    config = cli_config or config
    yaml_keys = set(read_yaml(config)) if config is not None and config.is_file() else set()
    known = _known_options(_parser())
    low = {k: v for k, v in (defaults or {}).items() if k not in yaml_keys and k not in (overrides or {})}
    return (
        (["--config", str(config)] if config else [])
        + to_tokens(low, known, "defaults")
        + rest
        + to_tokens(overrides or {}, known, "overrides")
    )


def parse_args(argv: Sequence[str], check_paths: bool = True, with_deepspeed: bool = True):
    """Parse (YAML then CLI) and validate. Returns (model, data, structlora, training) args.

    Args:
        argv: CLI tokens, optionally with `--config recipe.yaml` (its values come first, flags override them).
        check_paths: also check that the model, data and DeepSpeed files exist.
        with_deepspeed: False drops the DeepSpeed file from TrainingArguments so the launcher process can
            validate without initializing torch.distributed (the file is still checked).
    """
    parser = _parser()
    cfg_path, rest = split_config_flag(argv)
    src = f"config {cfg_path}" if cfg_path else "command line"
    if cfg_path is not None and not cfg_path.is_file():
        raise ConfigError(f"--config {cfg_path}: file not found")
    yaml_tokens = to_tokens(read_yaml(cfg_path), _known_options(parser), str(cfg_path)) if cfg_path else []
    tokens = yaml_tokens + rest
    ds_file = pop_option(tokens, "deepspeed") if not with_deepspeed else None
    try:
        margs, dargs, sargs, targs, remaining = parser.parse_args_into_dataclasses(
            args=tokens, return_remaining_strings=True
        )
    except (argparse.ArgumentError, ValueError, TypeError) as e:
        raise ConfigError(f"{src}: {e}") from e
    if remaining:
        raise ConfigError(f"{src}: unknown arguments {remaining}")
    if ds_file is not None:
        targs.deepspeed = ds_file  # kept for the launcher; checked below, not initialized
    validate(margs, dargs, sargs, targs, check_paths=check_paths)
    return margs, dargs, sargs, targs
