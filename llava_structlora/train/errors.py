"""The training configuration's error type (its own module so that specs.py and config.py share it)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A missing, garbled or inconsistent configuration value (raised before launch)."""
