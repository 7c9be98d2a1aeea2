"""Complete-only checkpoints: a checkpoint counts once its COMPLETE marker exists.

The Trainer writes `checkpoint-N/` file by file (and DeepSpeed writes per-rank shards), so a
kill -9 can leave a half-written directory. The marker is written atomically after every rank
finished; RESUME=auto picks the newest marked directory and never a partial one.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Optional

from llava_structlora.utils.artifacts import check_checkpoint_state
from llava_structlora.utils.io import atomic_write_json

from .safe_resume import verify_checkpoint

MARKER = "COMPLETE.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def mark_complete(ckpt: Path, step: int, world_size: int) -> Path:
    return atomic_write_json(Path(ckpt) / MARKER, {"step": step, "world_size": world_size, "time": time.time()})


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Marked checkpoint dirs, oldest step first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = _CKPT.match(d.name)
        if m and d.is_dir() and (d / MARKER).is_file():
            found.append((int(m.group(1)), d))
    return [d for _, d in sorted(found)]


def newest_complete(output_dir: str | Path) -> Optional[Path]:
    ckpts = complete_checkpoints(output_dir)
    return ckpts[-1] if ckpts else None


def rotate_complete(output_dir: str | Path, keep: Optional[int]) -> None:
    """Delete all but the newest `keep` complete checkpoints, and any partial one older than them."""
    if not keep or keep <= 0:
        return
    ckpts = complete_checkpoints(output_dir)
    for d in ckpts[:-keep]:
        shutil.rmtree(d, ignore_errors=True)
    oldest_kept = int(_CKPT.match(ckpts[-keep].name).group(1)) if len(ckpts) >= keep else 0
    for d in Path(output_dir).iterdir():
        m = _CKPT.match(d.name)
        if m and not (d / MARKER).is_file() and int(m.group(1)) < oldest_kept:
            shutil.rmtree(d, ignore_errors=True)


def resolve_resume(resume: str, output_dir: str | Path) -> Optional[str]:
    """`none` -> None; `auto` -> newest complete checkpoint (or None); else the given directory.

    The chosen checkpoint's pickles are verified (safe_resume.verify_checkpoint) before anything
    is built: a COMPLETE marker says the files are whole, not that they are ours.
    """
    if resume == "none":
        return None
    if resume == "auto":
        last = newest_complete(output_dir)
        if last is None:
            return None
        path = last
    else:
        path = Path(resume)
        if not (path / MARKER).is_file():
            raise ValueError(f"resume={resume}: not a complete checkpoint (no {MARKER}; interrupted while saving?)")
    verify_checkpoint(path)
    check_checkpoint_state(path)  # trainer_state.json whole, optimizer and scheduler there (utils.artifacts)
    return str(path)
