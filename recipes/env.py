"""The recipes' environment variables: read only when set (an empty value counts as unset)."""

from __future__ import annotations

import os
from typing import Optional

from llava_structlora.train.config import ConfigError


def env(name: str, default: Optional[str] = None) -> Optional[str]:
    """`$name` if set and non-empty, else `default`."""
    value = os.environ.get(name, "")
    return value if value != "" else default


def env_flag(name: str, default: bool) -> bool:
    """Boolean env var (1/0/true/false/yes/no); a garbled value is an error, not a silent default."""
    raw = env(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ConfigError(f"environment {name}={raw!r}: expected 0 or 1")


def env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = env(name, str(default))
    if not raw.lstrip("-").isdigit() or int(raw) < minimum:
        raise ConfigError(f"environment {name}={raw!r}: expected an int >= {minimum}")
    return int(raw)


def preset() -> str:
    """SMOKE=1 selects the smoke preset (data, base, YAML, `-smoke` run names) for training AND evaluation."""
    return "smoke" if env_flag("SMOKE", False) else "default"


def arch() -> str:
    """ARCH [llava]: the toy base's architecture; `next` = the LLaVA-1.5 toy base converted to LLaVA-NeXT."""
    from .layout import ARCHS

    value = env("ARCH", "llava")
    if value not in ARCHS:
        raise ConfigError(f"environment ARCH={value!r}: expected one of {list(ARCHS)}")
    return value
