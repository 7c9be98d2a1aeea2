"""From argv (and a YAML recipe) to one validated `TrainConfig`: the only place options are parsed.

Precedence, lowest to highest: dataclass default < `defaults` given by a launcher (the recipe layer's
paths) < YAML (`--config recipe.yaml`) < command-line flags < `overrides` (the recipe layer's
environment variables, only those that are set). `compose_argv` turns that into one argv, which the
launcher parses once (`parse_config`) and hands on unchanged to the training processes, which parse it
once each. Options the launcher derives from the parsed object (the run directory) are appended to that
argv as flags, so the training processes see exactly the launcher's configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import transformers

from .argv import pop_option, read_yaml, split_config_flag, to_tokens
from .errors import ConfigError
from .options import ALL_ARGS, TrainConfig, build_structlora_config
from .specs import get_spec
from .validation import check_finite, validate

# A launcher's derivation: the parsed config -> option: value for options nobody set (e.g. output_dir).
Derive = Callable[[TrainConfig], Mapping[str, Any]]


def train_parser() -> transformers.HfArgumentParser:
    """The parser of every training option (what `python -m llava_structlora.train --help` prints)."""
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
    known = _known_options(train_parser())
    low = {k: v for k, v in (defaults or {}).items() if k not in yaml_keys and k not in (overrides or {})}
    return (
        (["--config", str(config)] if config else [])
        + to_tokens(low, known, "defaults")
        + rest
        + to_tokens(overrides or {}, known, "overrides")
    )


def option_names(tokens: Sequence[str], known: Optional[set[str]] = None) -> frozenset[str]:
    """The option names that appear in `tokens` (`--name value` or `--name=value`), of `known` if given."""
    names = frozenset(t[2:].split("=", 1)[0] for t in tokens if t.startswith("--"))
    return names if known is None else names & known


def _replace(cfg: TrainConfig, values: Mapping[str, Any], deepspeed_off: bool) -> TrainConfig:
    """`cfg` with options of any of its four dataclasses replaced (the adapter config follows).

    deepspeed_off: rebuild TrainingArguments without its DeepSpeed file (see parse_config's with_deepspeed).
    """
    parts = dict(model=cfg.model, data=cfg.data, structlora=cfg.structlora, training=cfg.training)
    for key, part in parts.items():
        mine = {k: v for k, v in values.items() if k in {f.name for f in dataclasses.fields(part)}}
        if mine and key == "training" and deepspeed_off:
            ds = part.deepspeed
            parts[key] = dataclasses.replace(part, deepspeed=None, **mine)
            parts[key].deepspeed = ds
        elif mine:
            parts[key] = dataclasses.replace(part, **mine)
    unknown = set(values) - {f.name for p in parts.values() for f in dataclasses.fields(p)}
    if unknown:
        raise ConfigError(f"derived options {sorted(unknown)} are not training options")
    same = (parts["model"], parts["structlora"], parts["training"].seed) == (
        cfg.model,
        cfg.structlora,
        cfg.training.seed,
    )
    adapter = (
        cfg.adapter if same else build_structlora_config(parts["model"], parts["structlora"], parts["training"].seed)
    )
    return TrainConfig(**parts, adapter=adapter, given=cfg.given, source=cfg.source)


def parse_config(
    argv: Sequence[str], check_paths: bool = True, with_deepspeed: bool = True, derive: Optional[Derive] = None
) -> TrainConfig:
    """Parse (YAML then CLI) and validate, once. Returns the TrainConfig every consumer reads.

    Args:
        argv: CLI tokens, optionally with `--config recipe.yaml` (its values come first, flags override them).
        check_paths: also check that the model, data and DeepSpeed files exist.
        with_deepspeed: False drops the DeepSpeed file from TrainingArguments so the launcher process can
            validate without initializing torch.distributed (the file is still checked).
        derive: a launcher's values for options derived from the parsed config (only those not `given`);
            applied before validation.
    """
    parser = train_parser()
    known = _known_options(parser)
    cfg_path, rest = split_config_flag(argv)
    src = f"config {cfg_path}" if cfg_path else "command line"
    if cfg_path is not None and not cfg_path.is_file():
        raise ConfigError(f"--config {cfg_path}: file not found")
    yaml_tokens = to_tokens(read_yaml(cfg_path), known, str(cfg_path)) if cfg_path else []
    tokens = yaml_tokens + rest
    given = option_names(tokens, known)
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
    try:
        for obj in (margs, dargs, sargs, targs):
            check_finite(obj)
        get_spec(margs.method)  # names the known methods
        cfg = TrainConfig(margs, dargs, sargs, targs, build_structlora_config(margs, sargs, targs.seed), given, src)
        if derive is not None:
            extra = {k: v for k, v in derive(cfg).items() if k not in given}
            cfg = _replace(cfg, extra, deepspeed_off=ds_file is not None) if extra else cfg
        validate(cfg, with_paths=check_paths)
    except ConfigError as e:
        if cfg_path is None or str(cfg_path) in str(e):
            raise
        raise ConfigError(f"{e} [options from {cfg_path} and the command line]") from e
    return cfg


def parse_args(argv: Sequence[str], check_paths: bool = True, with_deepspeed: bool = True) -> tuple:
    """`parse_config(...).args`: (model, data, structlora, training) args, for callers that want the four."""
    return parse_config(argv, check_paths=check_paths, with_deepspeed=with_deepspeed).args
