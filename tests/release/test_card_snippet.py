"""The model card's snippet runs as written, in a venv holding only the packages the card lists, on a real
photograph; and the card names no file the release lacks and no local absolute path."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from card_env import ensure_card_env
from release_helpers import REPO, env, photo

from llava_structlora.model_card import ADAPTER_PLACEHOLDER, BASE_PLACEHOLDER, IMAGE_PLACEHOLDER


@pytest.fixture(scope="module")
def release(smoke_run, tmp_path_factory) -> Path:
    from llava_structlora.release import build_release

    return build_release(smoke_run, tmp_path_factory.mktemp("card") / "release")


def snippet(card: str) -> tuple[list[str], str]:
    """(the packages of its `# pip install` line, the code) of the card's python block."""
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    pip = re.search(r"^# pip install (.+)$", code, re.M).group(1)
    return shlex.split(pip), code


def run_snippet(python: Path | str, code: str, tmp: Path) -> subprocess.CompletedProcess:
    script = tmp / "card_snippet.py"
    script.write_text(code)
    return subprocess.run(
        [str(python), str(script)], capture_output=True, text=True, env=env(project=False), cwd="/tmp", timeout=600
    )


@pytest.mark.slow
def test_card_snippet_runs_in_a_venv_with_only_the_listed_packages(release, smoke_world, tmp_path):
    card = (release / "README.md").read_text()
    packages, code = snippet(card)
    assert {re.split("[=<>]", p)[0].lower() for p in packages} >= {"torch", "torchvision", "transformers", "peft"}
    assert "pillow" in packages  # the snippet imports PIL
    for placeholder in (BASE_PLACEHOLDER, ADAPTER_PLACEHOLDER, IMAGE_PLACEHOLDER):
        assert f'"{placeholder}"' in code, placeholder
    code = (
        code.replace(BASE_PLACEHOLDER, str(smoke_world["base"]))
        .replace(ADAPTER_PLACEHOLDER, str(release))
        .replace(IMAGE_PLACEHOLDER, str(photo()))
    )
    python, why = ensure_card_env(packages)
    if python is None:
        pytest.skip(why)
    cfg = (python.parent.parent / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg  # nothing but what pip installed from the list
    card_run = run_snippet(python, code, tmp_path)
    assert card_run.returncode == 0, card_run.stderr[-3000:]
    ours = run_snippet(sys.executable, code, tmp_path)  # the project's environment (repository off the path)
    assert ours.returncode == 0, ours.stderr[-3000:]
    assert card_run.stdout == ours.stdout and card_run.stdout.strip(), (card_run.stdout, ours.stdout)


def test_card_points_only_at_files_it_ships_and_no_local_path(release, smoke_run, tmp_path):
    from llava_structlora.release import build_release

    for folder in (release, build_release(smoke_run, tmp_path / "pushed", repo_id="someone/shapes-structlora")):
        card = (folder / "README.md").read_text()
        named = set(re.findall(r"`([\w.-]+\.(?:json|jinja|safetensors|md))`", card)) | {"SHA256SUMS"}
        assert named and all((folder / n).exists() for n in named), sorted(
            n for n in named if not (folder / n).exists()
        )
        assert "structlora_export.json" in card and (folder / "structlora_export.json").is_file()
        for local in (str(smoke_run), str(REPO), "/tmp/", "/work/", "/root/"):
            assert local not in card, local
        assert not re.findall(r"(?<![\w.:/<])/(?:[\w.-]+/)+[\w.-]+", card)  # no absolute path of any kind
