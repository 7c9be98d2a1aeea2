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
