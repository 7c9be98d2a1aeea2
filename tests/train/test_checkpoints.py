"""Complete-only checkpoints: partial directories are never resumed from nor rotated too early."""

from __future__ import annotations

import pytest

from llava_structlora.train.checkpoints import mark_complete, newest_complete, resolve_resume, rotate_complete


def _ckpt(root, step, complete=True):
    """A checkpoint dir with what the Trainer needs to resume (state, optimizer, scheduler)."""
    import json

    import torch

    d = root / f"checkpoint-{step}"
    d.mkdir()
    (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    for name in ("optimizer.pt", "scheduler.pt"):
        torch.save({"step": step}, d / name)
    if complete:
        mark_complete(d, step=step, world_size=2)
    return d


def test_newest_complete_ignores_partial(tmp_path):
    _ckpt(tmp_path, 2)
    _ckpt(tmp_path, 10)
    _ckpt(tmp_path, 12, complete=False)  # killed while saving
    assert newest_complete(tmp_path).name == "checkpoint-10"
    assert resolve_resume("auto", tmp_path).endswith("checkpoint-10")
    assert resolve_resume("none", tmp_path) is None
    assert resolve_resume("auto", tmp_path / "empty") is None
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        resolve_resume(str(tmp_path / "checkpoint-12"), tmp_path)


def test_rotation_keeps_newest_complete(tmp_path):
    for s in (2, 4, 6):
        _ckpt(tmp_path, s)
    _ckpt(tmp_path, 3, complete=False)
    _ckpt(tmp_path, 8, complete=False)
    rotate_complete(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]
