"""CLI tokens from YAML mappings and option dicts (the pieces cli.parse_args / compose_argv combine)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML keeps the last value silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{self.name}: key {key!r} is given twice (lines {seen[key]} and {line}); the last value would "
                    "silently win: keep one"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    """A flat YAML recipe as a dict; ConfigError naming the file when it is unreadable, not a mapping, or has a
    key twice."""
    try:
        with open(path, encoding="utf-8") as f:
            loader = _UniqueKeyLoader(f)
            loader.name = str(path)
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read YAML config ({e})") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    return data


def to_tokens(values: Mapping[str, Any], known: Optional[set[str]] = None, src: str = "") -> list[str]:
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


def split_config_flag(argv: Sequence[str]) -> tuple[Optional[Path], list[str]]:
    """(`--config FILE` if given, the other tokens)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    ns, rest = pre.parse_known_args(list(argv))
    return (Path(ns.config) if ns.config else None), rest


def pop_option(tokens: list[str], name: str) -> Optional[str]:
    """Remove every `--name value` from tokens, returning the last value."""
    value, i = None, 0
    while i < len(tokens):
        if tokens[i] == f"--{name}" and i + 1 < len(tokens):
            value = tokens[i + 1]
            del tokens[i : i + 2]
        elif tokens[i].startswith(f"--{name}="):
            value = tokens.pop(i).split("=", 1)[1]
        else:
            i += 1
    return value
