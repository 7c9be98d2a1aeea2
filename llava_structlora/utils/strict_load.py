"""Loads that fail loudly: a tensor transformers or PEFT would re-initialise is an error, not a warning.

``from_pretrained`` only *warns* when checkpoint keys do not match the model ("newly initialized"
weights), and PEFT only warns about missing adapter keys. A checkpoint saved under another
transformers version or a wrong base then runs with random tensors and produces garbage scores.
Every load in this project goes through these two functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .tower_names import v4_key

SHOWN = 12


class ReinitializedWeightsError(RuntimeError):
    """A checkpoint does not cover the model: tensors would be randomly initialised or dropped."""


def _names(keys: Any) -> list[str]:
    return sorted(str(k) for k in (keys or []))


def _listing(kind: str, keys: list[str]) -> str:
    more = f" ... and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return f"{len(keys)} {kind}: {', '.join(keys[:SHOWN])}{more}"


def check_loading_info(info: dict[str, Any], source: str | Path) -> None:
    """Raise if `from_pretrained(..., output_loading_info=True)` reports any key mismatch."""
    parts = []
    for kind, label in (
        ("missing_keys", "tensors missing from the checkpoint (would be re-initialised)"),
        ("mismatched_keys", "tensors with the wrong shape (would be re-initialised)"),
        ("unexpected_keys", "checkpoint tensors the model has no place for (would be dropped)"),
    ):
        keys = _names(info.get(kind))
        if keys:
            parts.append(_listing(label, keys))
    if info.get("error_msgs"):
        parts.append("errors: " + "; ".join(map(str, info["error_msgs"]))[:2000])
    if parts:
        raise ReinitializedWeightsError(
            f"loading {source}: "
            + "\n  - ".join([""] + parts)
            + "\nThe checkpoint does not match this model class / transformers version "
            "(a checkpoint saved with other key names, or a different architecture)."
        )


def from_pretrained_strict(cls: Any, path: str | Path, **kwargs: Any) -> Any:
    """`cls.from_pretrained(path, **kwargs)` that raises ReinitializedWeightsError on any key mismatch."""
    model, info = cls.from_pretrained(str(path), output_loading_info=True, **kwargs)
    check_loading_info(info, path)
    return model


def _normal(key: str) -> str:
    """Adapter key with PEFT's adapter name dropped, in the transformers-4 spelling."""
    return v4_key(key.replace(".default.", ".").removesuffix(".default"))


def check_adapter_loaded(peft_model: Any, adapter_dir: str | Path) -> None:
    """Every tensor of adapter_model.safetensors sits in the model, and every LoRA tensor came from it."""
    from peft import get_peft_model_state_dict
    from safetensors import safe_open

    with safe_open(str(Path(adapter_dir) / "adapter_model.safetensors"), framework="pt") as f:
        in_file = {_normal(k) for k in f.keys()}
    in_model = {_normal(k) for k in get_peft_model_state_dict(peft_model)}
    info = {"missing_keys": sorted(in_model - in_file), "unexpected_keys": sorted(in_file - in_model)}
    check_loading_info(info, f"adapter {adapter_dir}")


class AdapterShapeError(ValueError):
    """An adapter whose tensors do not fit the base's layers (another base, or another model size)."""


def _size_mismatches(err: RuntimeError) -> list[str]:
    return [ln.strip() for ln in str(err).splitlines() if ln.strip().startswith("size mismatch for")]


def peft_from_pretrained_strict(model: Any, adapter_dir: str | Path, **kwargs: Any) -> Any:
    """`PeftModel.from_pretrained` that raises if any adapter tensor is missing, left unused or misshapen.

    The adapter dir is checked first (utils.artifacts.check_adapter_dir: safetensors only, whole, ranks
    as configured); a shape mismatch with the base is an AdapterShapeError naming the file and tensors.
    """
    from peft import PeftModel

    from .artifacts import check_adapter_dir

    check_adapter_dir(adapter_dir)
    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter_dir), **kwargs)
    except RuntimeError as e:
        bad = _size_mismatches(e)
        if not bad:
            raise
        shown = "\n  - ".join(bad[:SHOWN]) + (f"\n  ... and {len(bad) - SHOWN} more" if len(bad) > SHOWN else "")
        raise AdapterShapeError(
            f"adapter {Path(adapter_dir) / 'adapter_model.safetensors'} does not fit this base "
            f"({len(bad)} tensors with the wrong shape):\n  - {shown}\nWas it trained on another base "
            "(another model size or version)? Pass the base it was trained on"
        ) from None
    check_adapter_loaded(peft_model, adapter_dir)
    return peft_model
