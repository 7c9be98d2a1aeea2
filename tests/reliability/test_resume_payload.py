"""Untrusted code on resume: ``RESUME=auto`` never unpickles code from a checkpoint.

DeepSpeed's checkpoint engine calls ``torch.load(weights_only=False)``; a ``.pt`` planted in a
``checkpoint-N/`` with a ``COMPLETE.json`` must be refused, with the file named, and its payload
(which creates a marker file when unpickled) must never run. The allow-listed types of real
DeepSpeed / Trainer checkpoints still load.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from .killer import REPO, child_env
from .test_untrusted_files import plant


def _fake_checkpoint(root: Path, step: int = 4) -> Path:
    ckpt = root / f"checkpoint-{step}"
    (ckpt / f"global_step{step}").mkdir(parents=True)
    torch.save({"module": {"w": torch.ones(2)}}, ckpt / f"global_step{step}" / "mp_rank_00_model_states.pt")
    (ckpt / "COMPLETE.json").write_text(json.dumps({"step": step, "world_size": 1}))
    return ckpt


@pytest.mark.parametrize(
    "where",
    [
        "global_step4/zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "rng_state_0.pth",
        "scheduler.pt",
        "global_step4/mp_rank_00_model_states.pt",
        "optimizer.bin",
    ],
)
def test_resume_auto_refuses_planted_pickle(where, tmp_path):
    from llava_structlora.train.checkpoints import resolve_resume
    from llava_structlora.train.safe_resume import UnsafeCheckpointError

    ckpt = _fake_checkpoint(tmp_path)
    marker = tmp_path / "pwned"
    plant(ckpt / where, marker)
    with pytest.raises(UnsafeCheckpointError, match=rf"{ckpt / where}: refusing to resume.*needs exec"):
        resolve_resume("auto", tmp_path)
    with pytest.raises(UnsafeCheckpointError):
        resolve_resume(str(ckpt), tmp_path)  # an explicit --resume DIR goes through the same check
    assert not marker.exists()


def test_deepspeed_engine_load_is_forced_weights_only(tmp_path):
    """The very call DeepSpeed makes on resume (weights_only=False) is refused inside the guard."""
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    from llava_structlora.train.safe_resume import UnsafeCheckpointError, weights_only_loads

    marker = tmp_path / "pwned"
    path = plant(tmp_path / "zero_pp_rank_0_mp_rank_00_optim_states.pt", marker)
    with weights_only_loads(), pytest.raises(UnsafeCheckpointError, match=str(path)):
        TorchCheckpointEngine().load(str(path), map_location="cpu")
    assert not marker.exists()
    assert torch.load is not None and torch.load.__name__ == "load"  # the guard is removed afterwards


def test_allow_listed_checkpoint_types_load(tmp_path):
    """What real ZeRO-2 optimizer shards and RNG files hold passes the guard."""
    import numpy as np
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    from llava_structlora.train.safe_resume import safe_load

    state = {
        "loss_scaler": LossScaler(1.0),
        "dyn": DynamicLossScaler(2.0**8, 1000, 1.0, 2, False),
        "zero_stage": ZeroStageEnum.gradients,
        "frag": fragment_address(numel=4, start=0),
        "numpy": np.random.get_state(),
        "cpu": torch.random.get_rng_state(),
    }
    torch.save(state, tmp_path / "ok.pt")
    got = safe_load(tmp_path / "ok.pt")
    assert got["zero_stage"] == ZeroStageEnum.gradients and got["frag"].numel == 4
    assert got["loss_scaler"].cur_scale == 1.0 and np.array_equal(got["numpy"][1], state["numpy"][1])


def test_corrupt_checkpoint_file_is_named(tmp_path):
    from llava_structlora.train.checkpoints import resolve_resume
    from llava_structlora.train.safe_resume import UnsafeCheckpointError

    ckpt = _fake_checkpoint(tmp_path)
    (ckpt / "rng_state_0.pth").write_bytes(b"\x80\x02garbage")
    with pytest.raises(UnsafeCheckpointError, match="rng_state_0.pth"):
        resolve_resume("auto", tmp_path)


@pytest.mark.slow
def test_real_recipe_resume_with_planted_payload_is_refused(tmp_path):
    """End to end: a real 2-rank ZeRO-2 run writes checkpoint-2; a payload replaces one of its
    DeepSpeed optimizer shards; ``RESUME=auto`` stops with exit != 0 naming the file, nothing ran."""
    from recipes.finetune import ensure_defaults
    from recipes.layout import RepoLayout

    base, data = ensure_defaults(RepoLayout.checkout(), "smoke")
    out = tmp_path / "run"
    env = child_env(SMOKE="1", EVAL="0", OUTPUT_DIR=str(out), RESUME="auto", DATA_ROOT=str(data), MODEL=str(base))
    cmd = ["bash", str(REPO / "scripts" / "finetune_coco.sh"), "--save_steps", "2"]
    first = subprocess.run(cmd + ["--max_steps", "2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert first.returncode == 0, first.stderr[-3000:]
    shard = out / "checkpoint-2" / "global_step2" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    assert shard.is_file() and (out / "checkpoint-2" / "COMPLETE.json").is_file()
    marker = tmp_path / "pwned"
    plant(shard, marker)
    second = subprocess.run(cmd + ["--max_steps", "4"], cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert second.returncode != 0
    assert str(shard) in second.stdout + second.stderr and "refusing to resume" in second.stdout + second.stderr
    assert not marker.exists(), "the planted payload ran"
    assert not (out / "checkpoint-4").exists()
    shutil.rmtree(out, ignore_errors=True)


def test_enum_pickled_by_name_loads_and_other_getattr_is_refused(tmp_path):
    """Python < 3.11.4 pickles int-mixin enums as getattr(cls, name): an allow-listed enum member loads, any other
    getattr (here os.system reached through an allow-listed class's module) is refused before it runs."""
    import pickle

    from deepspeed.runtime.zero.config import ZeroStageEnum

    from llava_structlora.train.safe_resume import UnsafeCheckpointError, safe_load

    class ByName:
        def __reduce__(self):
            return getattr, (ZeroStageEnum, "gradients")

    class Evil:
        def __reduce__(self):
            return getattr, (ZeroStageEnum, "__init__")

    torch.save({"z": ByName()}, tmp_path / "enum.pt", pickle_protocol=2)
    assert safe_load(tmp_path / "enum.pt")["z"] is ZeroStageEnum.gradients
    torch.save({"z": Evil()}, tmp_path / "evil.pt", pickle_protocol=2)
    with pytest.raises((UnsafeCheckpointError, pickle.UnpicklingError)):
        safe_load(tmp_path / "evil.pt")
