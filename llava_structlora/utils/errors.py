"""One error boundary for every entry point: a user error is one message and exit code 2.

Why: bad input (a missing image, a torn JSON file, a read-only output dir, a planted checkpoint)
must say which file, which record or line, and what is wrong, never end in a 40-line traceback.
Library code raises specific errors that name the file (``UserError`` or a ``ValueError`` /
``OSError`` subclass); the entry points (``main`` of train, evaluation, convert, metrics,
merge, release, converters, build_default, build_base) go through ``run_main`` /
``entry_point``, which turns those into ``error: ...`` on stderr and exit 2. Anything else
(a bug: RuntimeError, KeyError, TypeError...) keeps its traceback. ``LLAVA_SL_TRACEBACK=1``
prints the traceback of user errors too (for debugging).
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Optional

EXIT_USER_ERROR = 2


class UserError(ValueError):
    """Bad input or environment; the message names the file, the record or line, and what is wrong."""


def _extra_user_types() -> tuple[type, ...]:
    """Error types of libraries that only ever mean bad input (imported lazily, if installed)."""
    out: list[type] = []
    try:
        from PIL import Image

        out.append(Image.DecompressionBombError)
    except ImportError:
        pass
    try:
        import ijson

        out.append(ijson.JSONError)
    except ImportError:
        pass
    try:
        from safetensors import SafetensorError

        out.append(SafetensorError)
    except ImportError:
        pass
    try:
        import yaml

        out.append(yaml.YAMLError)
    except ImportError:
        pass
    return tuple(out)


# ----------------------------------------------------------------------------- writes that fail
_OUTPUTS: list[tuple[str, str]] = []  # (directory, what) this process writes, for messages
_FULL_TEXT = ("No space left on device", "os error 28", "StorageFull", "Disk quota exceeded", "os error 122")
_RO_TEXT = ("Read-only file system", "os error 30", "ReadOnlyFilesystem")
_WRITE_FAILED_TEXT = ("file write failed", "PytorchStreamWriter failed", "iostream error", "unexpected pos")


def note_output(path: str | os.PathLike, what: str) -> None:
    """Record that this process writes `what` under `path`: a disk-full error without a file name names it."""
    entry = (os.path.abspath(os.fspath(path)), what)
    if entry not in _OUTPUTS:
        _OUTPUTS.append(entry)


def _free(path: str) -> Optional[int]:
    p = path
    while p and not os.path.exists(p):
        p = os.path.dirname(p)
    try:
        return shutil.disk_usage(p or ".").free
    except OSError:
        return None


def _under(name: str, out: str) -> bool:
    """`name` is `out`, inside it, or inside one of its staging siblings (``.<out>.<owner>.partial``)."""
    parent, base = os.path.split(out.rstrip(os.sep))
    rel = os.path.relpath(name, parent)
    first = rel.split(os.sep)[0]
    return not rel.startswith("..") and (first == base or first.startswith(f".{base}."))


def _where(exc: BaseException) -> tuple[str, str]:
    """(directory, what) the failed write was for: the noted output that holds its file, else the file's dir."""
    name = getattr(exc, "filename", None)
    name = os.path.abspath(os.fspath(name)) if name else None
    for out, what in reversed(_OUTPUTS):
        if name is None or _under(name, out):
            return out, what
    if name is None:
        return os.getcwd(), "output"
    from .publish import final_of

    return final_of(name), "output"


def write_failure(exc: BaseException) -> Optional[str]:
    """The message for a write that failed because the disk is full or read-only (None: not such an error).

    Covers OSError (ENOSPC, EDQUOT, EROFS) and the wrappers that drop the errno: torch.save's
    RuntimeError ("file write failed") and safetensors' SafetensorError ("os error 28").
    """
    code = exc.errno if isinstance(exc, OSError) else None
    text = str(exc)
    full = code in (errno.ENOSPC, errno.EDQUOT) or any(t in text for t in _FULL_TEXT)
    readonly = code == errno.EROFS or any(t in text for t in _RO_TEXT)
    if not (full or readonly) and any(t in text for t in _WRITE_FAILED_TEXT):
        free = _free(_where(exc)[0])
        full = free is not None and free < (16 << 20)
    if not (full or readonly):
        return None
    out, what = _where(exc)
    if readonly:
        return f"cannot write the {what} {out}: the file system is read-only; choose a writable output directory"
    free = _free(out)
    left = f" ({free / 2**20:.1f} MiB free)" if free is not None else ""
    return (
        f"cannot write the {what} {out}: no space left on the device{left}. Nothing incomplete was published "
        "(the partial copy was removed); free some space or choose another output directory, then rerun"
    )


def user_message(exc: BaseException) -> Optional[str]:
    """The one-line message for a user error, None when `exc` is a bug (keep its traceback)."""
    if (failed := write_failure(exc)) is not None:
        return failed
    if isinstance(exc, RecursionError):
        return f"input nested too deeply to parse ({exc})"
    if isinstance(exc, UnicodeDecodeError):
        return (
            f"not UTF-8 text: byte {exc.object[exc.start : exc.start + 1]!r} at position {exc.start} "
            f"({exc.reason}); re-save the file as UTF-8"
        )
    if isinstance(exc, OSError):
        text = str(exc)
        name = getattr(exc, "filename", None)
        return text if not name or str(name) in text else f"{name}: {text}"
    if isinstance(exc, (ValueError, EOFError) + _extra_user_types()):
        return str(exc) or type(exc).__name__
    return None


def run_main(fn: Callable[..., Any], argv: Optional[Sequence[str]] = None, prog: str = "") -> int:
    """Call ``fn(argv)``; a user error prints ``[prog] error: ...`` and returns 2 (no traceback)."""
    try:
        rc = fn(argv)
        rc = rc if isinstance(rc, int) or rc is None else 0  # e.g. train's run() returns its output dir
    except KeyboardInterrupt:
        print(f"[{prog}] interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - sorted into user errors (exit 2) and bugs (re-raised)
        msg = user_message(exc)
        if msg is None:
            raise
        if os.environ.get("LLAVA_SL_TRACEBACK") == "1":
            traceback.print_exc()
        print(f"[{prog}] error: {msg}" if prog else f"error: {msg}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    return 0 if rc is None else int(rc)


def entry_point(prog: str) -> Callable[[Callable[..., Any]], Callable[..., int]]:
    """Decorator: ``main(argv)`` behind the error boundary (see ``run_main``)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., int]:
        @functools.wraps(fn)
        def main(argv: Optional[Sequence[str]] = None) -> int:
            return run_main(fn, argv, prog)

        return main

    return wrap
