"""A real StructLoRA smoke run (shapes world smoke preset, the project's trainer and evaluator),
shared by the release/merge tests; plus tiny from-config bases for the fast wrong-base checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from release_helpers import REPO  # noqa: E402


@pytest.fixture(scope="session")
def smoke_world() -> dict[str, Path]:
    """The cached smoke data + base under artifacts/ (built by the colleagues' builders if missing)."""
    from data_prep.build_default import build_default
    from llava_structlora.toy.build_base import build_base

    data, base = REPO / "artifacts" / "data" / "smoke", REPO / "artifacts" / "base" / "smoke"
    build_default(data, "smoke")
    build_base(data, base, "smoke")
    return {"data": data, "base": base}


@pytest.fixture(scope="session")
def smoke_run(smoke_world, tmp_path_factory) -> Path:
    """A StructLoRA run (10 steps, lr 5e-3 so that the adapter visibly changes the outputs)."""
    from llava_structlora.train.main import run as train_run

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("release") / "run"
    data, base = smoke_world["data"], smoke_world["base"]
    train_run(
        [
            "--model_name_or_path",
            str(base),
            "--task",
            "coco",
            "--data_root",
            str(data),
            "--data_path",
            str(data / "coco" / "llava_train.json"),
            "--output_dir",
            str(out),
            "--method",
            "structlora",
            "--lora_r",
            "4",
            "--lora_alpha",
            "8",
            "--learning_rate",
            "5e-3",
            "--max_steps",
            "10",
            "--per_device_train_batch_size",
            "8",
            "--seed",
            "0",
            "--save_strategy",
            "no",
            "--report_to",
            "none",
            "--plots",
            "false",
            "--disable_tqdm",
            "true",
            "--eval_split",
            "val",
            "--run_eval",
            "true",
        ]
    )  # the trainer's own validation writes metrics.json
    from llava_structlora.utils.locks import release

    # in a training process the run dir stays locked until that process exits (utils/locks.py); this one is the
    # test session, and the run is over: drop the hold so that merge/release subprocesses may read the run
    release(out)
    assert json.loads((out / "run.json").read_text())["base_model"] == str(base.resolve())
    return out


@pytest.fixture(scope="session")
def tiny_bases(tmp_path_factory) -> dict[str, Path]:
    from release_toy_models import save_lora_run, save_tiny_base

    root = tmp_path_factory.mktemp("tiny")
    bases = {
        "base": save_tiny_base(root / "base"),
        "wider": save_tiny_base(root / "wider", text_hidden=48),
        "deeper": save_tiny_base(root / "deeper", text_layers=3),
    }
    bases["run"] = save_lora_run(bases["base"], root / "run")
    return bases
