"""The recipe end-to-end tests' shared fixture: a private copy of the smoke data and base."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smoke_snapshot(tmp_path_factory) -> dict[str, str]:
    """A private copy of the smoke data + base, one per test module: runs compared with each other must
    not see a rebuild (the shared artifacts/ are rebuilt whenever data/base code changes)."""
    build = (
        "from recipes.finetune import ensure_defaults; from recipes.layout import RepoLayout; "
        "ensure_defaults(RepoLayout.checkout(), 'smoke')"
    )
    subprocess.run(
        [sys.executable, "-c", build],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    snap = tmp_path_factory.mktemp("smoke_snapshot")
    shutil.copytree(ROOT / "artifacts" / "data" / "smoke", snap / "data")
    shutil.copytree(ROOT / "artifacts" / "base" / "smoke", snap / "base")
    return {"DATA_ROOT": str(snap / "data"), "MODEL": str(snap / "base")}
