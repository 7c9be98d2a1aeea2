"""A real StructLoRA smoke run (shapes world smoke preset, the project's trainer and evaluator),
shared by the release/merge tests; plus tiny from-config bases for the fast wrong-base checks."""
from __future__ import annotations

import importlib.util
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


def _record_metrics(run: Path, base: Path, data: Path) -> None:
    """metrics.json via the real evaluation code, when the trainer's own validation is not available."""
    from llava_structlora.evaluation.config import EvalConfig
    from llava_structlora.evaluation.run import evaluate
    from llava_structlora.utils.io import atomic_write_json

    m = evaluate(EvalConfig(task="coco", model=str(base), data_root=str(data), split="val",
                            output_dir=str(run / "eval_adapter"), adapter=str(run / "adapter"), batch_size=16))
    atomic_write_json(run / "metrics.json", {"which": "adapter", "task": "coco", "split": "val",
                                             "adapter": str(run / "adapter"), **m})


@pytest.fixture(scope="session")
def smoke_run(smoke_world, tmp_path_factory) -> Path:
    """A StructLoRA run (10 steps, lr 5e-3 so that the adapter visibly changes the outputs)."""
    from llava_structlora.train.main import run as train_run

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("release") / "run"
    data, base = smoke_world["data"], smoke_world["base"]
    has_validation = importlib.util.find_spec("llava_structlora.train.validation") is not None
    train_run(["--model_name_or_path", str(base), "--task", "coco", "--data_root", str(data),
               "--data_path", str(data / "coco" / "llava_train.json"), "--output_dir", str(out),
               "--method", "structlora", "--lora_r", "4", "--lora_alpha", "8", "--learning_rate", "5e-3",
               "--max_steps", "10", "--per_device_train_batch_size", "8", "--seed", "0",
               "--save_strategy", "no", "--report_to", "none", "--plots", "false", "--disable_tqdm", "true",
               "--eval_split", "val", "--run_eval", "true" if has_validation else "false"])
    if not (out / "metrics.json").exists():
        _record_metrics(out, base, data)
    assert json.loads((out / "run.json").read_text())["base_model"] == str(base.resolve())
    return out


@pytest.fixture(scope="session")
def tiny_bases(tmp_path_factory) -> dict[str, Path]:
    from release_toy_models import save_lora_run, save_tiny_base

    root = tmp_path_factory.mktemp("tiny")
    bases = {"base": save_tiny_base(root / "base"), "wider": save_tiny_base(root / "wider", text_hidden=48),
             "deeper": save_tiny_base(root / "deeper", text_layers=3)}
    bases["run"] = save_lora_run(bases["base"], root / "run")
    return bases
