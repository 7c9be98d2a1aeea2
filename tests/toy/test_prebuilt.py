"""The shipped tiny bases (llava_structlora/toy/prebuilt/) are exactly what build_base pretrains from the same
inputs: the smoke preset is rebuilt here (seconds), the default's from-scratch rebuild is in the base_build
record (minutes: benchmarks/base_build.py). build_base installs a shipped base only for its own build key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llava_structlora.toy import prebuilt
from llava_structlora.toy.build_base import STAMP, build_base
from llava_structlora.utils.errors import UserError
from llava_structlora.utils.io import sha256_file

REPO = Path(__file__).resolve().parents[2]


def shipped_sums(preset: str) -> dict[str, str]:
    lines = (prebuilt.shipped_dir(preset) / prebuilt.SUMS).read_text().splitlines()
    return {name: digest for digest, name in (line.split("  ", 1) for line in lines)}


def test_smoke_rebuild_gives_the_shipped_files_byte_for_byte(smoke, tmp_path):
    rebuilt = build_base(smoke["data"], tmp_path / "base", "smoke", force=True)  # pretrains, ignores the copy
    stamp = json.loads((rebuilt / STAMP).read_text())
    assert "prebuilt" not in stamp and stamp["key"] == prebuilt.shipped_key("smoke")
    sums = shipped_sums("smoke")
    assert {"model.safetensors", "tokenizer.json", "config.json", "processor_config.json"} <= set(sums)
    for name, digest in sums.items():
        if name != STAMP:  # the stamp holds this build's timings
            assert sha256_file(rebuilt / name) == digest, name


def test_build_base_installs_the_shipped_base_for_its_key(smoke):
    """The session's smoke base (tests/conftest.py) came from the shipped copy: same weights, stamp says so."""
    stamp = json.loads((smoke["base"] / STAMP).read_text())
    assert stamp["prebuilt"] == "prebuilt/smoke" and stamp["key"] == prebuilt.shipped_key("smoke")
    assert stamp["data_root"] == str(smoke["data"].resolve())  # this machine's paths, not the builder's
    assert sha256_file(smoke["base"] / "model.safetensors") == shipped_sums("smoke")["model.safetensors"]
    assert "data_root" not in json.loads((prebuilt.shipped_dir("smoke") / STAMP).read_text())


def test_a_damaged_or_foreign_shipped_base_is_never_installed(tmp_path):
    root = tmp_path / "prebuilt"
    shutil.copytree(prebuilt.shipped_dir("smoke"), root / "smoke")
    key = prebuilt.shipped_key("smoke", root)
    assert not prebuilt.install(tmp_path / "out", "smoke", "another-key", {}, root=root)
    assert not prebuilt.install(tmp_path / "out", "default-v9", key, {}, root=root)  # nothing shipped
    assert not (tmp_path / "out").exists()
    weights = root / "smoke" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(UserError, match=r"differ from SHA256SUMS: model\.safetensors"):
        prebuilt.install(tmp_path / "out", "smoke", key, {}, root=root)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))  # nothing half-written


def test_shipped_default_is_the_recorded_from_scratch_rebuild():
    """benchmarks/base_build.py rebuilt the default base from scratch and recorded its weights' sha256."""
    record = json.loads((REPO / "docs" / "results" / "base_build.json").read_text())["data"]
    rebuild = record["rebuild"]["default"]
    assert rebuild["key"] == prebuilt.shipped_key("default")
    assert rebuild["weights_sha256"] == shipped_sums("default")["model.safetensors"]
    assert rebuild["identical_to_shipped"] is True
