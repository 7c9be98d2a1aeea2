"""The first run of a recipe on a fresh machine: scripts/setup.sh creates .venv and installs the
requirements under the recipes' own `set -euo pipefail` (a pipeline that exits non-zero would stop it).
The real, full first run (`SMOKE=1 bash scripts/finetune_coco.sh` without .venv) is the first step of .ci/run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
RECIPE_HEAD = 'set -euo pipefail\ncd "$(dirname "$0")/.."\nsource scripts/setup.sh\n'


@pytest.mark.slow
@pytest.mark.skipif(not Path(SYSTEM_PYTHON).is_file(), reason="no system python3 outside any venv to start from")
def test_setup_first_run_under_pipefail(tmp_path):
    repo = tmp_path / "clone"
    (repo / "scripts").mkdir(parents=True)
    for name in ("setup.sh", "check_env.py"):
        shutil.copy(ROOT / "scripts" / name, repo / "scripts" / name)
    (repo / "requirements.txt").write_text("tqdm==4.70.1\n")  # small, from the local package index
    body = '"$PYTHON" -c "import tqdm; print(\'first run ok\', tqdm.__version__)"\n'
    (repo / "scripts" / "recipe.sh").write_text("#!/usr/bin/env bash\n" + RECIPE_HEAD + body)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHON")}
    env.update(PATH="/usr/bin:/bin", PYTHON=SYSTEM_PYTHON)
    check = subprocess.run([SYSTEM_PYTHON, "scripts/check_env.py", "requirements.txt"], cwd=repo, env=env)
    assert check.returncode != 0, "the system python already satisfies the test requirement: nothing to install"
    first = subprocess.run(
        ["bash", "scripts/recipe.sh"], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert "first run ok 4.70.1" in first.stdout and "[setup] creating" in first.stderr
    assert re.search(r"\[setup\] installed the requirements into \.venv in \d+ s", first.stderr)
    assert "is ignored: it is neither a file nor a directory" not in first.stderr  # pip's index noise, filtered
    second = subprocess.run(
        ["bash", "scripts/recipe.sh"], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0 and "installing" not in second.stderr and "first run ok" in second.stdout


def test_recipes_use_strict_shell_options_and_one_entry_point():
    """Every recipe starts like the first-run test above and ends in one python entry point."""
    for path in [*ROOT.glob("scripts/finetune_*.sh"), *ROOT.glob("eval/*.sh")]:
        text = path.read_text()
        assert RECIPE_HEAD in text, path
        assert text.count('"$PYTHON" -m ') == 1 and not re.search(r"^export ", text, re.M), path
