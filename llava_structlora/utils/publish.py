"""One publish rule for every output (merged model, release, converter output, predictions, records).

1. Work happens in a *staging* sibling of the final path, whose name names its owner process:
   ``.<name>.<pid>-<start>-<host>-<seq>.partial`` (pid, the process' start time in clock ticks, so a
   reused pid is not mistaken for the owner, and a hash of the host name; a staged directory also
   holds ``.owner.json`` with the readable host name and command line). Nothing at the final path
   changes while the work runs.
2. The final rename is the only step that publishes: a file is ``os.replace``d, a directory is
   swapped in with one ``renameat2(RENAME_EXCHANGE)`` (the old version, now at the staging name, is
   removed after), so a kill at any instant leaves the old complete output or the new one.
3. SIGTERM / SIGINT remove this process' staging paths before the process ends (``install_cleanup``
   chains to the previous handler); an exception in the block removes them too. After SIGKILL the
   next run removes them: ``sweep_stale`` deletes a staging path whose owner is gone (same host, pid
   not running or running since another time), and any staging path of a target whose lock this
   process holds (``utils.locks``: no one else can be publishing it).
4. A path that is a symlink is written *through*: the link's target is replaced, the link stays.
5. Published files and directories get the modes the umask allows (never a forced 600/700, which
   mkstemp, mkdtemp and safetensors' save_file give).

Why not ``tempfile``: mkstemp/mkdtemp names carry no owner (a leftover cannot be told from a live
write) and force 600/700 modes. Test-only fault injection: ``LLAVA_SL_DEBUG_SIGNAL_AT=<point>[#k]``
(``LLAVA_SL_DEBUG_SIGNAL=TERM|KILL|INT``) sends the signal to this process at the k-th time it passes
``debug_point(<point>)``; the points are listed in tests/reliability/killer.py.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STAGE_SUFFIX = ".partial"
OWNER_FILE = ".owner.json"
_STAGE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-(?P<start>\d+)-(?P<host>[0-9a-f]{8})-\d+\.partial$")
_LEGACY = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")  # tempfile names of earlier versions
_SEQ = itertools.count()
_ACTIVE: dict[str, int] = {}  # staging path -> owner pid (a forked child never removes its parent's)
_ACTIVE_LOCK = threading.Lock()
_PREVIOUS: dict[int, object] = {}
_INSTALLED_IN: list[int] = []
_DEBUG_COUNTS: dict[str, int] = {}


# ----------------------------------------------------------------------------- owners
def _start_ticks(pid: int) -> int:
    """Start time of `pid` in clock ticks since boot (0 where /proc is not available)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])


def _host_hash(host: str) -> str:
    return hashlib.sha1(host.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Owner:
    """The process that owns a staging path."""

    pid: int
    start: int
    host: str  # hash of the host name

    @classmethod
    def current(cls) -> Owner:
        return cls(os.getpid(), _start_ticks(os.getpid()), _host_hash(socket.gethostname()))

    def alive(self) -> bool | None:
        """True / False on this host; None when the owner ran on another host (cannot be checked)."""
        if self.host != _host_hash(socket.gethostname()):
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # exists, another user's
        return not self.start or _start_ticks(self.pid) == self.start


def stage_owner(path: Path) -> Owner | None:
    """The owner a staging path's name records (None: not a staging name)."""
    m = _STAGE.match(path.name)
    return Owner(int(m["pid"]), int(m["start"]), m["host"]) if m else None


def stage_path(final: Path) -> Path:
    """A fresh staging sibling of `final` named after this process."""
    me = Owner.current()
    return final.parent / f".{final.name}.{me.pid}-{me.start}-{me.host}-{next(_SEQ)}{STAGE_SUFFIX}"


def target_of(path: str | os.PathLike) -> Path:
    """Where to publish `path`: the link's target when it is a symlink (written through, never replaced)."""
    path = Path(path).expanduser()
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def is_staging(path: Path) -> bool:
    return bool(_STAGE.match(path.name))


def final_of(name: str | os.PathLike) -> str:
    """The output a path under a staging directory will be published as (its directory for a plain file)."""
    parts = Path(name).parts
    for i, part in enumerate(parts):
        if m := _STAGE.match(part):
            return str(Path(*parts[:i], m["name"]))
    return os.path.dirname(os.fspath(name))


# ----------------------------------------------------------------------------- cleanup
def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def cleanup_active() -> None:
    """Remove every staging path this process still has open (signal handlers, atexit)."""
    me = os.getpid()
    with _ACTIVE_LOCK:
        mine = [p for p, pid in _ACTIVE.items() if pid == me]
        for p in mine:
            _ACTIVE.pop(p, None)
    for p in mine:
        _remove(Path(p))


def _handler(signum: int, frame: object) -> None:
    cleanup_active()
    prev = _PREVIOUS.get(signum)
    if callable(prev):
        prev(signum, frame)
        return
    if prev == signal.SIG_IGN:
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)  # unwinds: every `with` block below releases its locks and stagings


def install_cleanup() -> None:
    """Clean this process' staging paths on SIGTERM / SIGINT (main thread only; once per process)."""
    if os.getpid() in _INSTALLED_IN or threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        prev = signal.getsignal(sig)
        if prev is not _handler:
            _PREVIOUS[sig] = prev
            signal.signal(sig, _handler)
    _INSTALLED_IN.append(os.getpid())


@contextmanager
def _registered(path: Path) -> Iterator[None]:
    install_cleanup()
    with _ACTIVE_LOCK:
        _ACTIVE[str(path)] = os.getpid()
    try:
        yield
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.pop(str(path), None)


def sweep_stale(final: str | os.PathLike, locked: bool = False) -> list[Path]:
    """Remove staging leftovers of `final` whose owner is gone; all foreign ones when `locked`.

    `locked`: this process holds `final`'s lock, so no other process can be publishing it (a
    leftover of another host, or a tempfile name of an earlier version, is then removed too).
    """
    final = Path(final)
    if not final.parent.is_dir():
        return []
    me, removed = Owner.current(), []
    for p in final.parent.iterdir():
        if not p.name.startswith(f".{final.name}."):
            continue
        owner = stage_owner(p)
        if owner is not None and _STAGE.match(p.name)["name"] == final.name:
            if owner == me and str(p) in _ACTIVE:
                continue
            alive = owner.alive() if owner != me else False
            if alive is False or (alive is None and locked):
                _remove(p)
                removed.append(p)
        elif locked and (m := _LEGACY.match(p.name)) and m["name"] == final.name:
            _remove(p)
            removed.append(p)
    return removed


# ----------------------------------------------------------------------------- modes & fault injection
def umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(root: Path) -> None:
    """Give `root` (and everything under it) the modes the umask allows, executables kept executable.

    safetensors' ``save_file`` (and so ``save_pretrained``) replaces its file with one of mode 600:
    a shared cluster's group could not read a merged model or a release.
    """
    mask = umask()
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    for p in paths:
        if p.is_symlink():
            continue
        mode = p.stat().st_mode
        full = 0o777 if p.is_dir() or mode & 0o111 else 0o666
        os.chmod(p, full & ~mask)


def debug_point(name: str) -> None:
    """Test-only: signal this process at the k-th pass of point `name` (see the module docstring)."""
    want = os.environ.get("LLAVA_SL_DEBUG_SIGNAL_AT")
    if not want:
        return
    point, _, k = want.partition("#")
    if point != name:
        return
    _DEBUG_COUNTS[name] = _DEBUG_COUNTS.get(name, 0) + 1
    if _DEBUG_COUNTS[name] == int(k or 1):
        sig = getattr(signal, "SIG" + os.environ.get("LLAVA_SL_DEBUG_SIGNAL", "KILL"))
        os.kill(os.getpid(), sig)
        time.sleep(1)  # SIGKILL lands here; a handled signal ran its handler (and raised) already


# ----------------------------------------------------------------------------- files
@contextmanager
def staged_file(path: str | os.PathLike) -> Iterator[tuple[int, Path]]:
    """(fd, staging path) for a new version of the file `path`; renamed over it when the block succeeds."""
    final = target_of(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(final)
    stage = stage_path(final)
    with _registered(stage):
        fd = os.open(stage, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            yield fd, stage
            apply_umask(stage)
            debug_point("file-before-publish")
            os.replace(stage, final)
        except BaseException:
            _remove(stage)
            raise
    fsync_dir(final.parent)
    debug_point("file-published")


# ----------------------------------------------------------------------------- directories
def fsync_dir(path: Path) -> None:
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


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0


def old_sibling(final: Path) -> Path:
    return final.parent / f".{final.name}.old"


def recover_directory(final: str | os.PathLike) -> Path:
    """Restore `final` from its `.old` sibling if a crash hit between the fallback's two renames."""
    final = Path(final)
    old = old_sibling(final)
    if not final.exists() and old.is_dir():
        os.replace(old, final)
    return final


def _write_owner(stage: Path) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "start_ticks": Owner.current().start}
    info |= {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv}
    (stage / OWNER_FILE).write_text(json.dumps(info, indent=2) + "\n")


def swap_into_place(stage: Path, final: Path) -> None:
    """Publish the complete directory `stage` at `final` (one exchange, or two renames as a fallback)."""
    if final.exists() and exchange(stage, final):
        fsync_dir(final.parent)
        debug_point("dir-after-exchange")
        shutil.rmtree(stage, ignore_errors=True)  # stage now holds the previous version
        return
    old = None
    if final.exists():
        old = old_sibling(final)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        debug_point("dir-between-renames")
    os.replace(stage, final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_directory(final: str | os.PathLike, locked: bool = False) -> Iterator[Path]:
    """Yield a staging directory for `final`; when the block succeeds it replaces `final` atomically.

    `locked`: the caller holds `final`'s lock (utils.locks), so every foreign leftover is swept.
    """
    final = recover_directory(target_of(final))
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(final, locked=locked)
    stage = stage_path(final)
    with _registered(stage):
        try:
            stage.mkdir(mode=0o777)  # the umask decides the mode
            _write_owner(stage)
            debug_point("dir-staged")
            yield stage
            (stage / OWNER_FILE).unlink(missing_ok=True)
            apply_umask(stage)
            debug_point("dir-before-publish")
            swap_into_place(stage, final)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
    debug_point("dir-published")


def link_or_copy(src: Path, dst: Path) -> None:
    """Carry `src` into a staging dir: a hard link (no copy of big files), a copy across devices."""
    if src.is_dir():
        shutil.copytree(src, dst, copy_function=link_or_copy)  # type: ignore[arg-type]
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
