"""The user's filesystem: a full disk, a read-only output, an OUT that is a symlink, the umask.

Disk-full and read-only cases run on a size-limited (or read-only) tmpfs mounted for the test; where
the machine does not allow mounting (not root, no CAP_SYS_ADMIN) they are skipped with the reason.
Every refusal must exit 2, name the output directory, show no traceback and leave nothing that looks
like a complete output (no published folder, no stamp, no staging copy).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from .killer import debris, fork_call
from .test_concurrency import _train_argv
from .test_interrupts import _coco_raw, _merge_argv, eval_argv


@contextmanager
def _mounted(path: Path, options: str):
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root: disk-full / read-only cases not run")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()}): disk-full / read-only cases not run")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture()
def small_disk(tmp_path):
    with _mounted(tmp_path / "disk", "size=64k") as disk:
        yield disk


@pytest.fixture()
def full_disk(tmp_path):
    """A tmpfs with no free byte left (a filler file took it all)."""
    with _mounted(tmp_path / "full", "size=64k") as disk:
        fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield disk


@pytest.fixture()
def readonly_disk(tmp_path):
    with _mounted(tmp_path / "ro", "ro,size=64k") as disk:
        yield disk


def _clean_refusal(capfd, *needles: str) -> str:
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err[-2000:]!r}"
    return err


# ----------------------------------------------------------------------------- disk full
def test_disk_full_during_merge(small_disk, peft_adapter, tiny_base, capfd):
    from llava_structlora.merge import main

    out = small_disk / "merged"
    assert fork_call(main, _merge_argv(peft_adapter, out, tiny_base)) == 2
    _clean_refusal(capfd, f"cannot write the merged model {out}: no space left", "choose another output directory")
    assert not out.exists() and debris(small_disk) == [] and list(small_disk.iterdir()) == []


def test_disk_full_during_release(small_disk, peft_adapter, capfd):
    from llava_structlora.release import main

    out = small_disk / "release"
    (small_disk / "filler").write_bytes(b"\0" * 40_000)  # leaves less than the release needs
    assert fork_call(main, [str(peft_adapter), str(out)]) == 2
    _clean_refusal(capfd, f"cannot write the release {out}: no space left")
    assert not out.exists() and debris(small_disk) == []


def test_disk_full_during_evaluation(full_disk, eval_world, tiny_base, capfd):
    from llava_structlora.evaluation.__main__ import main

    out = full_disk / "eval"
    assert fork_call(main, eval_argv(eval_world, tiny_base, out)) == 2
    _clean_refusal(capfd, f"cannot write the evaluation output {out}: no space left")
    assert not (out / "metrics.json").exists() and debris(full_disk) == []


def test_disk_full_during_training(full_disk, tmp_path, tiny_base, capfd):
    from llava_structlora.train.main import main

    out = full_disk / "run"
    assert fork_call(main, _train_argv(tmp_path, tiny_base, out)) == 2
    _clean_refusal(capfd, f"cannot write the training run {out}: no space left")
    assert debris(full_disk) == []


@pytest.mark.parametrize("writer", ["torch.save", "safetensors", "atomic_write_json"])
def test_disk_full_errors_without_errno_name_the_directory(writer, full_disk, capsys):
    """What a checkpoint save raises mid-training: torch.save gives a RuntimeError ("file write failed"),
    safetensors a SafetensorError; both drop the errno and the path. The boundary names the run dir."""
    import torch
    from safetensors.torch import save_file

    from llava_structlora.utils.errors import note_output, run_main
    from llava_structlora.utils.io import atomic_write_json

    run = full_disk / "run"
    (run / "checkpoint-4").mkdir(parents=True)
    big = {"w": torch.zeros(64 << 10)}
    write = {
        "torch.save": lambda: torch.save(big, run / "checkpoint-4" / "optimizer.pt"),
        "safetensors": lambda: save_file(big, str(run / "checkpoint-4" / "model.safetensors")),
        "atomic_write_json": lambda: atomic_write_json(run / "checkpoint-4" / "state.json", {"x": "y" * 100_000}),
    }[writer]

    def fn(_):
        note_output(run, "training run")
        write()

    assert run_main(fn, [], "train") == 2
    err = capsys.readouterr().err
    assert f"cannot write the training run {run}: no space left" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- read-only
@pytest.mark.parametrize("kind", ["merge", "release", "convert"])
def test_read_only_output(kind, readonly_disk, tmp_path, peft_adapter, tiny_base, capfd):
    from data_prep.coco import main as convert
    from llava_structlora.merge import main as merge
    from llava_structlora.release import main as release

    out = readonly_disk / "out"
    call = {
        "merge": (merge, _merge_argv(peft_adapter, out, tiny_base)),
        "release": (release, [str(peft_adapter), str(out)]),
        "convert": (convert, [*_coco_raw(tmp_path / "raw"), "--out", str(out)]),
    }[kind]
    assert fork_call(*call) == 2
    _clean_refusal(capfd, "read-only", str(readonly_disk))
    assert list(readonly_disk.iterdir()) == []


# ----------------------------------------------------------------------------- symlinks and modes
@pytest.mark.parametrize("kind", ["merge", "release", "convert"])
def test_out_that_is_a_symlink_is_written_through(kind, tmp_path, peft_adapter, tiny_base):
    """OUT -> a folder elsewhere: the output lands in the folder, the link stays a link (twice: --overwrite)."""
    from data_prep.coco import main as convert
    from llava_structlora.merge import main as merge
    from llava_structlora.release import main as release

    target = tmp_path / "bigdisk" / "models" / "out"
    target.mkdir(parents=True)
    link = tmp_path / "work" / "out"
    link.parent.mkdir()
    link.symlink_to(target)
    argv = {
        "merge": (merge, _merge_argv(peft_adapter, link, tiny_base)),
        "release": (release, [str(peft_adapter), str(link), "--overwrite"]),
        "convert": (convert, [*_coco_raw(tmp_path / "raw"), "--out", str(link)]),
    }[kind]
    for _ in range(2):
        assert argv[0](argv[1]) == 0
        assert link.is_symlink() and link.resolve() == target.resolve()
        names = {p.name for p in target.iterdir()}
        assert names & {"config.json", "adapter_model.safetensors", "manifest.json"}
        assert debris(tmp_path / "bigdisk", tmp_path / "work") == []


def _modes(root: Path) -> set[tuple[str, int]]:
    return {("d" if p.is_dir() else "f", stat.S_IMODE(p.stat().st_mode)) for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize("mask,want", [(0o022, {("d", 0o755), ("f", 0o644)}), (0o002, {("d", 0o775), ("f", 0o664)})])
@pytest.mark.parametrize("kind", ["merge", "release"])
def test_outputs_honour_the_umask(kind, mask, want, tmp_path, peft_adapter, tiny_base):
    """A shared cluster's group reads a release / merged model when the umask says so (no forced 600/700)."""
    from llava_structlora.merge import main as merge
    from llava_structlora.release import main as release

    src = tmp_path / "run"
    shutil.copytree(peft_adapter, src)
    os.chmod(src / "adapter_model.safetensors", 0o600)  # what safetensors' save_file leaves in a run dir
    out = tmp_path / "out"
    argv = _merge_argv(src, out, tiny_base) if kind == "merge" else [str(src), str(out)]
    assert fork_call(merge if kind == "merge" else release, argv, umask=mask) == 0
    assert _modes(out) == want
