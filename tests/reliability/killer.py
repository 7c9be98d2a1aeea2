"""Run a Python snippet in a child process and ``kill -9`` it at a chosen point.

Why a helper: the crash tests must kill a *real* process (no exception handlers, no finally
blocks, no atexit) at a point that is either deterministic (the child prints a marker and then
blocks, e.g. half-way through a write) or random (a delay drawn by the test).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def start(code: str | list[str], cwd: Path | None = None, **env: str) -> subprocess.Popen:
    """A python snippet (str) or a command (list), in its own session so that ``kill9`` can
    take down the whole group it spawns (e.g. the DeepSpeed launcher's ranks)."""
    cmd = [sys.executable, "-c", code] if isinstance(code, str) else code
    return subprocess.Popen(
        cmd,
        cwd=cwd or REPO,
        env=child_env(**env),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen, marker: str, timeout: float = 60.0) -> str:
    """Read child stdout until a line containing ``marker`` (fail if it exits first)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line:
                seen.append(line)
                if marker in line:
                    return line
                continue
        if proc.poll() is not None:
            break
    err = proc.stderr.read() if proc.poll() is not None else ""
    kill9(proc)
    raise AssertionError(f"child never printed {marker!r}; stdout={''.join(seen)[-2000:]!r} stderr={err[-4000:]}")


def kill9(proc: subprocess.Popen) -> None:
    """SIGKILL this child's process group (it was started in its own session) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


# ----------------------------------------------------------------------------- forked children
# Why fork: a child that inherits the already-imported torch / transformers starts in milliseconds,
# so a kill test can run the real entry point (merge, release, converters, evaluation) at many
# points. The kill point is deterministic: LLAVA_SL_DEBUG_SIGNAL_AT names a publish point of
# llava_structlora.utils.publish.debug_point ("dir-staged", "dir-before-publish", "dir-after-exchange",
# "file-published#k", "file-before-publish#k", or one of the entry point's own, e.g. "merge-saved-weights")
# and the child sends itself LLAVA_SL_DEBUG_SIGNAL (KILL, TERM, INT or STOP) when it gets there.
def _child_main(fn, args, env: dict[str, str], umask: int | None) -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.update(env)
    if umask is not None:
        os.umask(umask)
    from llava_structlora.utils import locks

    try:
        rc = fn(*args)
    finally:
        locks._release_all()  # its atexit hook in a real process (multiprocessing ends with os._exit)
    sys.stdout.flush()
    sys.exit(rc if isinstance(rc, int) else 0)


def fork(fn, *args, signal_at: str | None = None, sig: str = "KILL", umask: int | None = None, **env: str):
    """Start `fn(*args)` in a forked child (a multiprocessing.Process; `.exitcode` < 0: killed by a signal)."""
    import multiprocessing as mp

    if signal_at:
        env = {**env, "LLAVA_SL_DEBUG_SIGNAL_AT": signal_at, "LLAVA_SL_DEBUG_SIGNAL": sig}
    proc = mp.get_context("fork").Process(target=_child_main, args=(fn, args, env, umask))
    proc.start()
    return proc


def fork_call(fn, *args, timeout: float = 300.0, **kw) -> int:
    """Run `fn(*args)` in a forked child to its end; its exit code (128+N after a handled signal N, -N killed)."""
    proc = fork(fn, *args, **kw)
    proc.join(timeout)
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        raise AssertionError(f"{fn.__name__}{args} did not finish in {timeout} s")
    return proc.exitcode


def wait_stopped(proc, timeout: float = 120.0) -> None:
    """Wait until a forked child has stopped itself (LLAVA_SL_DEBUG_SIGNAL=STOP)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            state = "gone"
        if state in ("T", "t"):
            return
        if state in ("Z", "gone") or not proc.is_alive():
            raise AssertionError(f"child exited (code {proc.exitcode}) before its stop point")
        time.sleep(0.02)
    raise AssertionError("child never reached its stop point")


def resume(proc, timeout: float = 300.0) -> int:
    os.kill(proc.pid, signal.SIGCONT)
    proc.join(timeout)
    return proc.exitcode


DEBRIS_SUFFIXES = (".partial", ".old", ".lock", ".tmp")


def debris(*folders: Path) -> list[str]:
    """Leftovers of the publish rule (staging paths, fallback `.old`, lock files) in and under `folders`."""
    found = []
    for folder in folders:
        if folder.is_dir():
            found += [str(p) for p in folder.rglob(".*") if p.name.endswith(DEBRIS_SUFFIXES)]
    return sorted(found)
