"""Atomic writes: a kill -9 during a save leaves the previous complete
file / directory usable at its normal path.

The child process is killed at deterministic points of ``llava_structlora.utils.io``'s protocol
(half-way through the data, after the data but before the rename, between the two renames of
``atomic_directory``) and at random points of a save loop. A control run shows that a plain
(non-atomic) ``save_file`` killed the same way does corrupt the file, i.e. the kill really lands
inside the write.
"""

from __future__ import annotations

import random
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, safe_open

from llava_structlora.utils.io import atomic_directory, atomic_save_safetensors

from .killer import kill9, start, wait_for_line

N = 1 << 20  # 4 MiB tensors: big enough that a partial write is visible


def _tensors(version: int) -> dict[str, torch.Tensor]:
    return {"w": torch.full((N,), float(version)), "b": torch.full((7,), float(version))}


def _file_version(path: Path) -> int:
    """The version of a complete file; raises on a partial/corrupt one."""
    with safe_open(str(path), "pt") as f:
        version = int(f.metadata()["version"])
    t = load_file(str(path))
    assert set(t) == {"w", "b"} and bool((t["w"] == version).all()) and bool((t["b"] == version).all())
    return version


CHILD_FILE = textwrap.dedent("""
    import os, sys, time, torch, safetensors.torch as st
    from llava_structlora.utils.io import atomic_save_safetensors
    path, mode = sys.argv[1] if len(sys.argv) > 1 else {path!r}, {mode!r}
    N = {n}
    def block():
        print("READY", flush=True); time.sleep(600)
    if mode == "partial":           # die half-way through the data
        real = st.save_file
        def half(tensors, filename, metadata=None):
            real(tensors, filename, metadata=metadata)
            data = open(filename, "rb").read(); open(filename, "wb").write(data[: len(data) // 2]); block()
        st.save_file = half
    elif mode == "before_rename":   # data complete in the temp file, rename not done
        os.replace = lambda *a: block()
    elif mode == "plain":           # control: non-atomic write straight to the final path
        def plain(tensors, _, metadata=None):
            st.save_file(tensors, path + ".part", metadata=metadata)
            data = open(path + ".part", "rb").read(); open(path, "wb").write(data[: len(data) // 2]); block()
        atomic_save_safetensors = plain
    v = 1
    while True:
        print("SAVING", v, flush=True)
        atomic_save_safetensors({{"w": torch.full((N,), float(v)), "b": torch.full((7,), float(v))}},
                                path, metadata={{"version": str(v)}})
        v += 1
""")


def _run_file_child(path: Path, mode: str) -> None:
    proc = start(CHILD_FILE.format(path=str(path), mode=mode, n=N))
    try:
        wait_for_line(proc, "READY")
    finally:
        kill9(proc)


@pytest.mark.parametrize("mode", ["partial", "before_rename"])
def test_killed_safetensors_save_keeps_previous_file(mode, tmp_path):
    path = tmp_path / "adapter_model.safetensors"
    atomic_save_safetensors(_tensors(0), path, metadata={"version": "0"})
    _run_file_child(path, mode)
    assert _file_version(path) == 0


def test_control_plain_write_killed_is_corrupt(tmp_path):
    path = tmp_path / "adapter_model.safetensors"
    atomic_save_safetensors(_tensors(0), path, metadata={"version": "0"})
    _run_file_child(path, "plain")
    with pytest.raises(Exception):  # noqa: B017 - any read error proves the torn file; the type varies by cut point
        _file_version(path)


def test_random_kills_in_save_loop_leave_a_complete_file(tmp_path):
    path = tmp_path / "adapter_model.safetensors"
    atomic_save_safetensors(_tensors(0), path, metadata={"version": "0"})
    rng = random.Random(7)
    for _ in range(3):
        proc = start(CHILD_FILE.format(path=str(path), mode="loop", n=N))
        try:
            wait_for_line(proc, "SAVING 2")
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            kill9(proc)
        # complete whatever version the kill left; >= 1 because save 1 finished before "SAVING 2"
        assert _file_version(path) >= 1


CHILD_DIR = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import llava_structlora.utils.io as io
    import llava_structlora.utils.publish as publish
    final, mode = Path({final!r}), {mode!r}
    def block():
        print("READY", flush=True); time.sleep(600)
    if mode == "after_exchange":    # renameat2 swap done, cleanup of the old version not yet
        real_exchange = publish.exchange
        publish.exchange = lambda a, b: (real_exchange(a, b), block())[0]
    elif mode == "between_renames":  # fallback path: old moved aside, new not yet in place
        publish.exchange = lambda a, b: False
        real, calls = os.replace, []
        def replace(src, dst):
            calls.append(src)
            if len(calls) == 2:
                block()
            real(src, dst)
        os.replace = replace
    with io.atomic_directory(final) as tmp:
        (tmp / "adapter_config.json").write_text('{{"version": 1}}')
        if mode == "partial":
            block()
        (tmp / "adapter_model.bin.part").write_text("1")
        (tmp / "DONE").write_text("1")
""")


def _write_dir_v0(final: Path) -> None:
    with atomic_directory(final) as tmp:
        (tmp / "adapter_config.json").write_text('{"version": 0}')
        (tmp / "adapter_model.bin.part").write_text("0")
        (tmp / "DONE").write_text("0")


def _dir_version(final: Path) -> str:
    files = sorted(p.name for p in final.iterdir())
    assert files == ["DONE", "adapter_config.json", "adapter_model.bin.part"], files
    versions = {(final / f).read_text().strip().strip('{}"version: ') for f in files}
    assert len(versions) == 1, versions
    return versions.pop()


def test_killed_directory_write_keeps_previous_directory(tmp_path):
    final = tmp_path / "checkpoint"
    _write_dir_v0(final)
    proc = start(CHILD_DIR.format(final=str(final), mode="partial"))
    try:
        wait_for_line(proc, "READY")
    finally:
        kill9(proc)
    assert _dir_version(final) == "0"


def _kill_dir_child(final: Path, mode: str) -> None:
    proc = start(CHILD_DIR.format(final=str(final), mode=mode))
    try:
        wait_for_line(proc, "READY")
    finally:
        kill9(proc)


def test_kill_after_directory_exchange_leaves_the_new_complete_directory(tmp_path):
    final = tmp_path / "checkpoint"
    _write_dir_v0(final)
    _kill_dir_child(final, "after_exchange")
    assert _dir_version(final) == "1"


def test_kill_between_fallback_renames_is_recovered(tmp_path):
    """Without renameat2 the old dir is moved aside first; a kill right then leaves no `final`,
    and ``recover_directory`` (run by atomic_directory and by loaders) restores the old one."""
    from llava_structlora.utils.io import recover_directory

    final = tmp_path / "checkpoint"
    _write_dir_v0(final)
    _kill_dir_child(final, "between_renames")
    assert _dir_version(recover_directory(final)) == "0"
