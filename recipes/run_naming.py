"""The run directory's name: `<task>-<method>-r<r>-s<seed>[-<arch>][-<hash>][-smoke]`, from the parsed config.

Different settings must never share a directory (a rerun would resume, or be refused, or be scored with
another run's answers). So every option that changes the weights and that the user set (a flag, a set
environment variable, or a `--config` of their own) to a value other than the recipe's own joins the name
as a short stable hash: `bash scripts/finetune_coco.sh --coordinator laplacian` trains into
`outputs/coco-structlora-r8-s0-<hash>`, next to the default run. The recipe's own settings (its YAML, its
paths) give the plain name, so the default run and eval/*.sh keep finding each other.

Paths (MODEL, DATA_ROOT, the DeepSpeed file) are not hashed: a run on another base or data in the same
directory is refused by the resume identity, which lists the difference (set OUTPUT_DIR for such runs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

from llava_structlora.train.argv import read_yaml, split_config_flag
from llava_structlora.train.cli import option_names
from llava_structlora.train.config import ALL_ARGS, TrainConfig
from llava_structlora.train.identity import weight_options

IN_NAME = frozenset({"task", "method", "lora_r", "seed"})
NOT_HASHED = frozenset({"model_name_or_path", "data_root", "data_path", "image_folder", "deepspeed"})
_FIELD_DEFAULTS: dict[str, Any] = {
    f.name: (f.default if f.default is not dataclasses.MISSING else None)
    for cls in ALL_ARGS
    for f in dataclasses.fields(cls)
    if f.init
}


def user_options(cli: list[str], overrides: Mapping[str, Any]) -> set[str]:
    """The options the user set: flags, a `--config` of their own, and set environment variables."""
    config, rest = split_config_flag(cli)
    names = set(option_names(rest)) | set(overrides)
    if config is not None and config.is_file():
        names |= set(read_yaml(config))
    return names


def recipe_values(config: Optional[Path], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """What the recipe alone gives an option: its YAML over the launcher's defaults over the dataclass's."""
    yaml_values = read_yaml(config) if config is not None and config.is_file() else {}
    return {**_FIELD_DEFAULTS, **{k: v for k, v in defaults.items() if v is not None}, **yaml_values}


def _same(a: Any, b: Any) -> bool:
    """Equal as option values (YAML `1.0e-4` vs a parsed 0.0001, `true` vs True, None vs False)."""
    if a == b or (a in (None, False, "") and b in (None, False, "")):
        return True
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return json.dumps(a, default=str).lower().strip('"') == json.dumps(b, default=str).lower().strip('"')


def settings_hash(cfg: TrainConfig, user: set[str], recipe: Mapping[str, Any]) -> str:
    """Short stable hash of the weight-changing options the user set away from the recipe ('' when none)."""
    weights = weight_options(*cfg.args)
    changed = {
        k: weights[k]
        for k in sorted(user)
        if k in weights and k not in IN_NAME | NOT_HASHED and not _same(weights[k], recipe.get(k))
    }
    if not changed:
        return ""
    return hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]
