"""Output locks: two runs writing the same output (or a merge reading a run that trains) never interleave.

One lock per output path: ``.<name>.lock`` beside it (beside a symlink's target), an OS lock
(``flock``, via the ``filelock`` package) that the kernel drops when its owner dies, so a killed run
never leaves a lock behind. The file holds who owns it (pid, host, what, since when): the second
run exits 2 naming the lock file and its owner. It is removed when released; a process that opened
the old file just before then finds it gone and retries (``_claim`` compares inodes), so two holders
are impossible.

Locks are reentrant within a process, and a launcher passes the locks it holds to the processes it
starts (``LLAVA_SL_HELD_LOCKS``): the training ranks of a recipe share the recipe's lock on
OUTPUT_DIR instead of fighting over it.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import UserError
from .publish import target_of

HELD_ENV = "LLAVA_SL_HELD_LOCKS"
_HELD: dict[str, list[Any]] = {}  # lock path -> [filelock object, depth]


class OutputLockedError(UserError):
    """Another process holds the lock of an output this run would write (or read while it is written)."""


class _Replaced(Exception):
    """The lock file was removed and recreated between our open and our flock: try again."""


def lock_path(path: str | os.PathLike) -> Path:
    target = target_of(Path(path).expanduser().absolute())
    return target.parent / f".{target.name}.lock"


def _inherited() -> set[str]:
    return {p for p in os.environ.get(HELD_ENV, "").split(os.pathsep) if p}


def _claim(path: Path, what: str):
    def on_acquired(fd: int) -> None:
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            raise _Replaced(str(path))
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "what": what, "since": time.strftime("%H:%M:%S")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(owner) + "\n").encode(), 0)
        except OSError:
            pass  # a full disk: the lock still holds, a refused second run just cannot name its owner

    return on_acquired


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"{info['what']} (pid {info['pid']} on {info['host']}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _file_lock(cls: Any, lock: Path, timeout: float, what: str) -> Any:
    try:
        return cls(lock, timeout=timeout, on_acquired=_claim(lock, what), thread_local=False)
    except TypeError:  # filelock 3.x (the lmms-eval venv pins 3.32.7)
        fl = cls(lock, timeout=timeout, thread_local=False)
        fl._llava_claim = True
        return fl


def acquire(path: str | os.PathLike, what: str, timeout: float = 0) -> Path:
    """Take the lock of output `path` (wait up to `timeout` s); OutputLockedError names lock file and owner."""
    from filelock import FileLock, Timeout

    lock = lock_path(path)
    key = str(lock)
    if key in _HELD:
        _HELD[key][1] += 1
        return lock
    if key in _inherited():
        _HELD[key] = [None, 1]
        return lock
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(20):
        fl = _file_lock(FileLock, lock, timeout, what)
        try:
            fl.acquire()
            if getattr(fl, "_llava_claim", None):  # filelock 3: no on_acquired hook, claim after the fact
                _claim(lock, what)(fl._context.lock_file_fd)
        except Timeout:
            raise OutputLockedError(
                f"{target_of(path)} is in use by {_holder(lock)}: it holds the lock {lock}. "
                f"Wait until it finishes (this {what} did not start), or write elsewhere"
            ) from None
        except _Replaced:
            if fl.is_locked:
                fl.release()
            continue
        _HELD[key] = [fl, 1]
        return lock
    raise OutputLockedError(f"could not take the lock {lock}: it keeps being replaced")


def release(path: str | os.PathLike) -> None:
    """Drop one hold of `path`'s lock; the last one removes the lock file, then unlocks it."""
    key = str(lock_path(path))
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] > 0:
        return
    del _HELD[key]
    if held[0] is not None:
        try:
            os.unlink(key)  # while still locked: whoever opened it meanwhile sees another inode and retries
        except FileNotFoundError:
            pass
        held[0].release()


@contextmanager
def output_lock(path: str | os.PathLike, what: str, timeout: float = 0) -> Iterator[Path]:
    """Hold `path`'s lock for the block."""
    lock = acquire(path, what, timeout)
    try:
        yield lock
    finally:
        release(path)


def check_not_in_use(path: str | os.PathLike, what: str) -> None:
    """Refuse (OutputLockedError) when another process holds `path`'s lock; hold nothing afterwards.

    For readers of a run dir (merge, release): a training run holds its dir's lock for its whole life,
    readers only probe it, at the start and again before they publish, so that a merge while the
    run trains exits 2 either way round, while two readers of one finished run never block each other.
    """
    if str(lock_path(path)) in _HELD or str(lock_path(path)) in _inherited():
        return
    acquire(path, what)
    release(path)


def hold_for_process(path: str | os.PathLike, what: str) -> Path:
    """Hold `path`'s lock until this process exits, and hand it to the processes it starts (a launcher)."""
    lock = acquire(path, what)
    held = _inherited() | {str(lock)}
    os.environ[HELD_ENV] = os.pathsep.join(sorted(held))
    return lock  # released by _release_all at exit (the kernel drops it on a kill)


def _release_all() -> None:
    for key in list(_HELD):
        _HELD[key][1] = 1
        release(Path(key).parent / Path(key).name[1:].removesuffix(".lock"))


atexit.register(_release_all)


def reset_after_fork() -> None:
    """In a forked child: forget the parent's holds (the flock is the parent's, not ours)."""
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reset_after_fork)
