"""Run a launcher (deepspeed / torchrun) so that terminating the recipe terminates every rank.

``subprocess.run`` leaves the children running when the recipe gets SIGTERM (a batch scheduler's
cancel, ``kill``): the Python parent dies, the DeepSpeed launcher and its ranks keep training and
writing checkpoints. ``run_group`` starts the command in its own process group, forwards SIGTERM /
SIGINT / SIGHUP to the whole group, waits until no process of the group is left (SIGKILL after a
grace period), and then ends the recipe with the signal's exit status. The child also gets
PR_SET_PDEATHSIG on Linux, so even a SIGKILL of the recipe reaches the launcher (which stops its ranks).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
GRACE_S = 30.0


def _child_setup() -> None:
    os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def descendants(pid: int) -> dict[int, int]:
    """pid -> start ticks of every live descendant of `pid` (Linux /proc; empty elsewhere).

    torchrun starts each rank in a session of its own, outside our group: they are found here.
    """
    from .publish import _start_ticks

    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = _start_ticks(child)
            todo.append(child)
    return out


def _still_running(procs: dict[int, int]) -> dict[int, int]:
    from .publish import _start_ticks

    return {p: t for p, t in procs.items() if _start_ticks(p) == t and t and not _is_zombie(p)}


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pgid: int) -> None:
    """Collect zombies of the group that are our children (the leader); others are reaped by init."""
    try:
        while os.waitpid(-pgid, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def _signal_all(pgid: int, others: dict[int, int], signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass
    for pid in _still_running(others):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def wait_group(pgid: int, grace: float, others: dict[int, int] | None = None) -> None:
    """Wait until no process of group `pgid` (nor of `others`) is left; SIGKILL them after `grace` seconds."""
    others = others or {}
    deadline = time.monotonic() + grace
    while True:
        _reap(pgid)
        if not group_alive(pgid) and not _still_running(others):
            return
        if time.monotonic() > deadline:
            _signal_all(pgid, others, signal.SIGKILL)
            deadline = time.monotonic() + grace
        time.sleep(0.1)


def run_group(
    cmd: Sequence[str], env: dict[str, str] | None = None, cwd: str | Path | None = None, grace: float | None = None
) -> int:
    """Run `cmd` in its own process group; a signal to us goes to the whole group, which we wait for.

    Returns the command's exit code; after a forwarded signal, raises SystemExit(128 + signal) once
    every process of the group is gone (SIGINT: KeyboardInterrupt).
    """
    grace = GRACE_S if grace is None else grace
    proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, preexec_fn=_child_setup)  # noqa: PLW1509
    pgid = proc.pid
    received: list[int] = []
    tree: dict[int, int] = {}

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        tree.update(descendants(pgid))
        _signal_all(pgid, tree, signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        rc = proc.wait()
        if received:
            wait_group(pgid, grace, tree)
        elif group_alive(pgid):  # the launcher exited and left ranks behind: stop them
            _signal_all(pgid, {}, signal.SIGTERM)
            wait_group(pgid, grace)
    except BaseException:
        tree.update(descendants(pgid))
        _signal_all(pgid, tree, signal.SIGTERM)
        wait_group(pgid, grace, tree)
        raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if received:
        print(f"[launcher] stopped by signal {received[0]}: every rank has exited", file=sys.stderr, flush=True)
        if received[0] == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + received[0])
    return rc
