"""Atomic, crash-safe writes and safe loads.

A kill -9 at any point must leave either the previous complete file/directory or the new
complete one, never a half-written file: write to a temp path in the same directory, fsync,
then os.replace (atomic on POSIX).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # torch is imported lazily: converters use this module without it
    import torch


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _temp_sibling(path: Path) -> Iterator[tuple[int, str]]:
    """(fd, name) of a temp file next to `path`, renamed over it when the block succeeds, removed when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[TextIO]:
    """Streaming variant: a file object on a temp sibling, renamed over `path` only on success."""
    with _temp_sibling(Path(path)) as (fd, _):
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def atomic_save_safetensors(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> Path:
    """safetensors.torch.save_file into a temp file, then rename."""
    from safetensors.torch import save_file

    path = Path(path)
    with _temp_sibling(path) as (fd, tmp):
        os.close(fd)
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange)
    return rc == 0


def recover_directory(final: str | os.PathLike) -> Path:
    """Restore `final` from its `.old` sibling if a crash hit between the fallback's two renames."""
    final = Path(final)
    old = final.parent / f".{final.name}.old"
    if not final.exists() and old.is_dir():
        os.replace(old, final)
    return final


class OutputDirError(ValueError):
    """An output path that would destroy data it does not own (names the path and why)."""


OUTPUT_MARKER = "llava_structlora_output.json"


def output_kind(path: str | os.PathLike) -> str | None:
    """The kind recorded in `path`'s output marker (None: no marker, i.e. not one of our outputs)."""
    marker = Path(path) / OUTPUT_MARKER
    try:
        kind = json.loads(marker.read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if isinstance(kind, str) else None


def check_no_overlap(out: str | os.PathLike, protected: dict[str, str | os.PathLike | None]) -> None:
    """Refuse `out` equal to, inside or above any protected directory (e.g. the run or the base)."""
    out_r = Path(out).expanduser().resolve()
    for label, path in protected.items():
        if path is None or not Path(path).expanduser().exists():
            continue
        p = Path(path).expanduser().resolve()
        if out_r == p or p in out_r.parents or out_r in p.parents:
            rel = "is" if out_r == p else ("is inside" if p in out_r.parents else "contains")
            raise OutputDirError(f"refusing to write {out}: it {rel} the {label} {path}; choose another output dir")


def check_output_dir(
    out: str | os.PathLike,
    kind: str,
    overwrite: bool = False,
    protected: dict[str, str | os.PathLike | None] | None = None,
) -> Path:
    """Raise OutputDirError unless writing a `kind` output at `out` cannot destroy foreign data.

    Allowed: `out` absent or an empty directory; with `overwrite`, a previous output of the
    same kind (its marker says so). Never: a file, a user's non-empty folder, another kind's
    output, or a path equal to / inside / above a protected directory.
    """
    out = Path(out)
    check_no_overlap(out, protected or {})
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return out
    if not out.is_dir():
        raise OutputDirError(f"refusing to write {out}: it exists and is not a directory")
    found = output_kind(out)
    if found != kind:
        what = f"a {found} output" if found else f"a non-empty directory that is not a {kind} output"
        raise OutputDirError(
            f"refusing to replace {out}: it is {what} (no {OUTPUT_MARKER} of kind {kind!r}); "
            "choose an empty or new output dir"
        )
    if not overwrite:
        raise OutputDirError(
            f"refusing to replace {out}: it holds a previous {kind} output; pass --overwrite to replace it"
        )
    return out


def check_rebuildable(
    out: str | os.PathLike, stamp: str, what: str, protected: dict[str, str | os.PathLike | None] | None = None
) -> Path:
    """A cached build (data root, base) replaces `out` wholesale: only when absent, empty or stamped by us."""
    out = Path(out)
    check_no_overlap(out, protected or {})
    if out.exists() and not (out / stamp).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise OutputDirError(
            f"refusing to build the {what} into {out}: it exists and has no {stamp}, so it is "
            f"not a previous {what} build; choose an empty or new directory"
        )
    return out


@contextmanager
def atomic_directory(
    final: str | os.PathLike,
    kind: str | None = None,
    overwrite: bool = False,
    protected: dict[str, str | os.PathLike | None] | None = None,
) -> Iterator[Path]:
    """Yield a temp directory beside `final`; on success it replaces `final` atomically.

    An existing `final` is swapped with the new one in a single renameat2(RENAME_EXCHANGE), so a
    kill -9 at any instant leaves either the old or the new complete directory. Where that call
    is unavailable the old one is moved to `.<name>.old` first; `recover_directory` (run on
    entry here and by loaders) puts it back if a crash hit between the two renames.

    With `kind` (user-chosen output paths: merge, release) `check_output_dir` runs first and
    the new directory gets an output marker naming its kind, so a later `--overwrite` can tell
    our own previous output from a user's folder. Without it the caller owns `final`.
    """
    final = recover_directory(final)
    if kind is not None:
        check_output_dir(final, kind, overwrite, protected)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        if kind is not None:
            atomic_write_json(tmp / OUTPUT_MARKER, {"kind": kind, "written_by": "llava_structlora"})
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists() and _exchange(tmp, final):
        _fsync_dir(final.parent)
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous version
        return
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_optional_json(path: str | os.PathLike) -> Any:
    """Parsed JSON of `path`, `{}` when it does not exist, a clear error naming it when malformed."""
    from .jsonio import read_json

    path = Path(path)
    if not path.exists():
        return {}
    return read_json(path)  # BOM accepted; UTF-16, torn or deep JSON: an error naming file and line


def safe_torch_load(path: str | os.PathLike, map_location: str = "cpu") -> Any:
    """torch.load restricted to tensors and plain containers (never unpickles code)."""
    import torch

    return torch.load(path, map_location=map_location, weights_only=True)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def hash_jsonable(obj: Any) -> str:
    """Stable short hash of a JSON-serializable object (cache keys for data/base builds)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
