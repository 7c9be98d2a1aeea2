"""Helpers shared by the release tests (subprocesses run offline, single-threaded)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def env(project: bool) -> dict[str, str]:
    """Offline, passive OpenMP, one thread; `project=False` keeps the repository off the import path."""
    out = {
        **os.environ,
        "OMP_WAIT_POLICY": "PASSIVE",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    out.pop("PYTHONPATH", None)
    if project:
        out["PYTHONPATH"] = str(REPO)
    return out


def run_cmd(args: list[str], project: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run a command in a fresh process.

    cwd is a neutral directory, so `import llava_structlora` cannot work by accident.
    """
    return subprocess.run(
        args, capture_output=True, text=True, env=env(project), timeout=600, cwd=kw.pop("cwd", "/tmp"), **kw
    )


def photo() -> Path:
    """A real photograph, 512 x 600 px (non-square, far above the toy base's 48 px input): matplotlib's
    sample image (matplotlib is pinned in requirements.txt), so no test downloads anything."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
