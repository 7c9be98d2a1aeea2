"""Resume without ever unpickling code: every checkpoint pickle is read with weights_only=True.

DeepSpeed's TorchCheckpointEngine (and its universal-checkpoint paths) call
``torch.load(..., weights_only=False)``, so a ``.pt`` planted in ``outputs/`` would run code on
``RESUME=auto``. Two guards, both using one allow-list of the types these files really hold
(checked on real ZeRO-2 checkpoints: tensors, containers, DeepSpeed's loss scaler, ZeRO stage
enum and fragment addresses, numpy RNG arrays):

- ``verify_checkpoint``: before any model is built, every pickle in the checkpoint dir is loaded
  with ``weights_only=True`` (mmap'ed, so tensors are not read); a foreign type is refused with
  the file named.
- ``weights_only_loads``: while DeepSpeed / the Trainer restore state, ``torch.load`` itself is
  forced to ``weights_only=True`` with the same allow-list, so no later load can unpickle code.
"""

from __future__ import annotations

import enum
import importlib
import pickle
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

_ORIGINAL_LOAD = torch.load  # kept before weights_only_loads() patches it
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
# "module:qualname" of the non-tensor types DeepSpeed ZeRO / HF Trainer checkpoints contain.
TRUSTED_TYPES = (
    "deepspeed.runtime.fp16.loss_scaler:LossScaler",
    "deepspeed.runtime.fp16.loss_scaler:DynamicLossScaler",
    "deepspeed.runtime.zero.config:ZeroStageEnum",
    "deepspeed.utils.tensor_fragment:fragment_address",
    "numpy._core.multiarray:_reconstruct",
    "numpy.core.multiarray:_reconstruct",
    "numpy:ndarray",
    "numpy:dtype",
)


class UnsafeCheckpointError(ValueError):
    """A checkpoint file holds pickled objects outside the allow-list (never unpickled)."""


def trusted_globals() -> list[Any]:
    """The allow-list, resolved (types whose module is not installed are left out)."""
    out: list[Any] = []
    for spec in TRUSTED_TYPES:
        mod, name = spec.split(":")
        try:
            out.append(getattr(importlib.import_module(mod), name))
        except (ImportError, AttributeError):
            continue
    try:
        import numpy as np

        out += [type(np.dtype(t)) for t in (np.uint32, np.float32, np.float64, np.int64)]
    except ImportError:
        pass
    return out


def _enum_getattr(trusted: list[Any]):
    """Stands in for ``builtins.getattr`` while unpickling: Python < 3.11.4 (e.g. Debian's 3.11.2) pickles
    ``int``-mixin enums such as ZeroStageEnum as ``getattr(cls, "member")``. Only a member of an allow-listed
    Enum class is returned, so this never reaches an arbitrary attribute (a method, a module)."""

    def enum_member(cls: Any, name: str) -> Any:
        if isinstance(cls, type) and issubclass(cls, enum.Enum) and cls in trusted and name in cls.__members__:
            return cls.__members__[name]
        raise pickle.UnpicklingError(f"Unsupported global: GLOBAL builtins.getattr({cls!r}, {name!r})")

    return enum_member


def allow_list() -> list[Any]:
    """What ``torch.serialization.safe_globals`` gets: the trusted types and the enum-member getattr."""
    trusted = trusted_globals()
    return [*trusted, (_enum_getattr(trusted), "builtins.getattr")]


def _refusal(path: Any, err: BaseException) -> UnsafeCheckpointError:
    text = str(err)
    m = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    detail = f"it needs {m.group(1)}" if m else (text.strip().splitlines() or [type(err).__name__])[0][:200]
    return UnsafeCheckpointError(
        f"{path}: refusing to resume: this checkpoint file holds pickled objects outside the allow-list of "
        f"checkpoint types ({detail}). It may run code when loaded; only resume from checkpoints you wrote "
        f"(delete this checkpoint dir or pass RESUME=none / --resume none)."
    )


def safe_load(path: str | Path, map_location: Any = "cpu", mmap: bool | None = None) -> Any:
    """torch.load(weights_only=True) with the checkpoint allow-list; UnsafeCheckpointError names the file."""
    try:
        with torch.serialization.safe_globals(allow_list()):
            return _ORIGINAL_LOAD(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise _refusal(path, e) from None


def _pickle_files(ckpt: Path) -> list[Path]:
    return sorted(p for p in ckpt.rglob("*") if p.is_file() and p.suffix in PICKLE_SUFFIXES)


def verify_checkpoint(ckpt: str | Path) -> int:
    """Load every pickle of `ckpt` safely (tensors mmap'ed, not read); returns how many were checked."""
    files = _pickle_files(Path(ckpt))
    for path in files:
        try:
            safe_load(path, mmap=zipfile.is_zipfile(path))
        except UnsafeCheckpointError:
            raise
        except (RuntimeError, OSError, EOFError, ValueError) as e:
            raise UnsafeCheckpointError(
                f"{path}: unreadable checkpoint file ({e}); resume from another checkpoint or pass RESUME=none"
            ) from None
    return len(files)


@contextmanager
def weights_only_loads() -> Iterator[None]:
    """Force every torch.load in this block to weights_only=True with the allow-list."""

    def guarded(
        f: Any,
        map_location: Any = None,
        pickle_module: Any = None,
        *,
        weights_only: Any = None,
        mmap: Any = None,
        **kwargs: Any,
    ) -> Any:
        try:
            with torch.serialization.safe_globals(allow_list()):
                return _ORIGINAL_LOAD(f, map_location=map_location, weights_only=True, mmap=mmap, **kwargs)
        except pickle.UnpicklingError as e:
            raise _refusal(f, e) from None

    torch.load = guarded
    try:
        yield
    finally:
        torch.load = _ORIGINAL_LOAD
