"""Run a launcher (deepspeed / torchrun) so that terminating the recipe terminates every rank.

``subprocess.run`` leaves the children running when the recipe alone gets SIGTERM (a batch
scheduler's cancel, ``kill PID``): the Python parent dies, the DeepSpeed launcher and its ranks keep
training and writing checkpoints. ``run_launcher`` forwards SIGTERM / SIGINT / SIGHUP to the
launcher and to every process below it (torchrun starts each rank in a session of its own, so a
process-group signal would miss them), waits until none is left (SIGKILL after a grace period),
and then ends the recipe with the signal's exit status.

The launcher stays in the recipe's process group, so a signal to the whole group (Ctrl-C in a
terminal, ``kill -- -PGID``) still reaches everything at once, as before; it also gets
PR_SET_PDEATHSIG on Linux, so even a SIGKILL of the recipe alone reaches the launcher.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .publish import _start_ticks

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
GRACE_S = 30.0


def _child_setup() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def descendants(pid: int) -> dict[int, int]:
    """pid -> start ticks of every live descendant of `pid` (Linux /proc; empty elsewhere)."""
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


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def still_running(procs: dict[int, int]) -> dict[int, int]:
    """The processes of `procs` (pid -> start ticks) still running as themselves (a reused pid is not)."""
    return {p: t for p, t in procs.items() if t and _start_ticks(p) == t and not _is_zombie(p)}


def _signal(procs: dict[int, int], signum: int) -> None:
    for pid in still_running(procs):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def stop_all(launcher: subprocess.Popen, procs: dict[int, int], signum: int, grace: float) -> None:
    """Send `signum` to the launcher and `procs`, wait until all have exited (SIGKILL after `grace` s)."""
    procs = {**procs, **descendants(launcher.pid)}
    if launcher.poll() is None:
        procs[launcher.pid] = _start_ticks(launcher.pid)
    _signal(procs, signum)
    deadline = time.monotonic() + grace
    while True:
        launcher.poll()  # reaps the launcher; the ranks are reaped by it or by init
        procs.update(descendants(launcher.pid) if launcher.returncode is None else {})
        if not still_running(procs):
            return
        if time.monotonic() > deadline:
            _signal(procs, signal.SIGKILL)
            deadline = time.monotonic() + grace
        time.sleep(0.1)


def run_launcher(
    cmd: Sequence[str], env: dict[str, str] | None = None, cwd: str | Path | None = None, grace: float | None = None
) -> int:
    """Run `cmd`; a SIGTERM / SIGINT / SIGHUP to this process reaches the launcher and every rank, which we wait for.

    Returns the command's exit code (ranks it left behind are stopped); after a forwarded signal,
    raises SystemExit(128 + signal) once every process below us is gone (SIGINT: KeyboardInterrupt).
    """
    grace = GRACE_S if grace is None else grace
    proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, preexec_fn=_child_setup)  # noqa: PLW1509
    received: list[int] = []
    tree: dict[int, int] = {}

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        tree.update(descendants(proc.pid))
        tree[proc.pid] = _start_ticks(proc.pid)
        _signal(tree, signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        while proc.poll() is None:  # the tree is watched: ranks a dying launcher orphans are still known
            tree.update(descendants(proc.pid))
            time.sleep(0.5)
        rc = proc.returncode
        if received:
            stop_all(proc, tree, received[0], grace)
        elif still_running(tree):  # the launcher exited and left ranks behind: stop them
            stop_all(proc, tree, signal.SIGTERM, grace)
    except BaseException:
        stop_all(proc, tree, signal.SIGTERM, grace)
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
