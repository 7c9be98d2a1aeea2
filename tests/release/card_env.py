"""A venv holding only what the model card's snippet lists (cached under artifacts/card_env/<hash>/).

`python -m venv` without system site packages, then `pip install <the card's packages>` from the registry
pip is configured with (here: the local wheel cache and indexes): what a reader of the card does. Built once
per package list; measured cost in docs/release.md.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

from release_helpers import REPO


def card_env_dir(packages: list[str]) -> Path:
    digest = hashlib.sha256(" ".join(sorted(packages)).encode()).hexdigest()[:12]
    return REPO / "artifacts" / "card_env" / digest


def ensure_card_env(packages: list[str]) -> tuple[Path | None, str]:
    """(venv python, "") once the venv has exactly `packages` (+ their dependencies), else (None, why not)."""
    target = card_env_dir(packages)
    python = target / "bin" / "python"
    if (target / "INSTALLED").is_file():
        return python, ""
    t0 = time.time()
    # a venv cannot be moved (its paths are fixed at creation): built in place, complete once INSTALLED exists
    steps = [
        [sys.executable, "-m", "venv", "--without-pip", str(target)],
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--disable-pip-version-check",
            "--no-compile",  # byte-compiling torch + transformers was most of the build; imports compile lazily
            "-q",
            *packages,
        ],
    ]
    shutil.rmtree(target, ignore_errors=True)
    for cmd in steps:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        if res.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            return None, f"could not build the card's venv ({' '.join(cmd[-len(packages) :])}): {res.stderr[-600:]}"
    (target / "INSTALLED").write_text(f"{time.time() - t0:.1f} s\n{' '.join(packages)}\n")
    return python, ""
