"""Atomic, crash-safe writes and safe loads.

A kill -9 at any point must leave either the previous complete file/directory or the new
complete one, never a half-written file: write to a staging path in the same directory, fsync,
then os.replace (atomic on POSIX). Staging names, their cleanup (signals, next run), symlinks and
modes follow the one publish rule of utils/publish.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .publish import (  # noqa: F401 - re-exported: the publish rule's public names
    OWNER_FILE,
    Owner,
    exchange,
    fsync_dir,
    recover_directory,
    staged_directory,
    staged_file,
    target_of,
)

if TYPE_CHECKING:  # torch is imported lazily: converters use this module without it
    import torch

_fsync_dir = fsync_dir


@contextmanager
def _temp_sibling(path: Path) -> Iterator[tuple[int, str]]:
    """(fd, name) of a staging file next to `path`, renamed over it when the block succeeds."""
    with staged_file(path) as (fd, stage):
        yield fd, str(stage)


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


def _file_sizes(folder: Path) -> dict[str, int]:
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in (OUTPUT_MARKER, OWNER_FILE)
    }


def write_output_marker(folder: Path, kind: str, **extra: Any) -> Path:
    """The stamp that makes `folder` a complete `kind` output: written last, it lists every file and size."""
    me = Owner.current()
    stamp = {
        "kind": kind,
        "written_by": "llava_structlora",
        "complete": True,
        "run": {"pid": me.pid, "host": socket.gethostname(), "start_ticks": me.start, "time": time.time()},
        "files": _file_sizes(folder),
        **extra,
    }
    return atomic_write_json(folder / OUTPUT_MARKER, stamp)


class IncompleteOutputError(ValueError):
    """A published folder whose stamp is missing, not complete, or does not describe its files."""


def verify_output(folder: str | os.PathLike, kind: str | None = None) -> dict[str, Any]:
    """The folder's stamp, after checking that every file it lists is there with its size and nothing else is."""
    from .jsonio import read_json

    folder = Path(folder)
    stamp = read_json(folder / OUTPUT_MARKER, "output stamp") if (folder / OUTPUT_MARKER).is_file() else None
    if not isinstance(stamp, dict) or stamp.get("complete") is not True or not isinstance(stamp.get("files"), dict):
        raise IncompleteOutputError(
            f"{folder}: not a complete output (no complete {OUTPUT_MARKER}); rerun the command that writes it"
        )
    if kind is not None and stamp.get("kind") != kind:
        raise IncompleteOutputError(f"{folder}: a {stamp.get('kind')!r} output, expected {kind!r}")
    found = _file_sizes(folder)
    for name, size in stamp["files"].items():
        if name not in found:
            raise IncompleteOutputError(f"{folder / name}: listed in {OUTPUT_MARKER} but missing; rerun to rewrite it")
        if found[name] != size:
            raise IncompleteOutputError(
                f"{folder / name}: {found[name]} bytes, {OUTPUT_MARKER} says {size} (truncated or replaced "
                "after it was written); rerun the command that wrote it"
            )
    extra = sorted(set(found) - set(stamp["files"]))
    if extra:
        raise IncompleteOutputError(
            f"{folder}: {extra[0]} was not written by the run that stamped this folder ({len(extra)} such files)"
        )
    return stamp


@contextmanager
def atomic_directory(
    final: str | os.PathLike,
    kind: str | None = None,
    overwrite: bool = False,
    protected: dict[str, str | os.PathLike | None] | None = None,
    locked: bool = False,
) -> Iterator[Path]:
    """Yield a staging directory beside `final`; on success it replaces `final` atomically (utils.publish).

    A symlink at `final` is written through (its target is replaced, the link stays). With `kind`
    (user-chosen output paths: merge, release) `check_output_dir` runs first and the new
    directory is stamped last (``write_output_marker``: kind, run, every file and its size), so a
    later `--overwrite` can tell our own previous output from a user's folder and a loader can
    tell a complete output (``verify_output``). `locked`: the caller holds `final`'s lock
    (utils.locks), so every foreign leftover beside it is swept.
    """
    final = recover_directory(target_of(final))
    if kind is not None:
        check_output_dir(final, kind, overwrite, protected)
    with staged_directory(final, locked=locked) as tmp:
        yield tmp
        if kind is not None:
            write_output_marker(tmp, kind)


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
