"""A transformers 4.57 install in a --target directory next to the project's torch (cached under artifacts/tf4/).

The project venv pins transformers 5; releases must also load under the last 4.x release. pip installs
requirements-transformers4.txt (no dependencies: torch, safetensors, peft, numpy come from the venv)
into artifacts/tf4/<hash of the file>/ once; a process with that directory first on PYTHONPATH imports
transformers 4. Measured here: about 22 s on a 2-core machine with a warm pip cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from release_helpers import REPO, env

REQUIREMENTS = REPO / "requirements-transformers4.txt"


def tf4_dir() -> Path:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    return REPO / "artifacts" / "tf4" / digest


def ensure_tf4() -> tuple[Path | None, str]:
    """(target dir, "") when transformers 4 is importable from it, else (None, why it could not be installed)."""
    target = tf4_dir()
    if (target / "INSTALLED").is_file():
        return target, ""
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.time()
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(tmp),
            "-r",
            str(REQUIREMENTS),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        return None, (
            f"pip could not install {REQUIREMENTS.name} into a --target dir (rc {res.returncode}): "
            f"{(res.stderr or res.stdout)[-600:]}"
        )
    (tmp / "INSTALLED").write_text(f"{time.time() - t0:.1f} s\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target, ""


def tf4_env(target: Path) -> dict[str, str]:
    """Offline, single-threaded env whose Python imports transformers 4 from `target` (no project code)."""
    out = env(project=False)
    out["PYTHONPATH"] = str(target)
    return out


def run_tf4(target: Path, args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=tf4_env(target), timeout=600, cwd="/tmp"
    )
