"""The configuration is parsed once into one TrainConfig and handed down: the rank reaches the weights in at
most 6 calls with no file visited twice, the StructLoRAConfig is built once per process, and the optimizer
groups / regularizer use the config they are handed (nothing reads it back off the model)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch
import transformers

from llava_structlora.structlora import StructLoRAConfig, StructLoRALinear, get_controller
from llava_structlora.train import cli
from llava_structlora.train import main as train_main
from recipes import finetune
from recipes.layout import RepoLayout

ROOT = Path(__file__).resolve().parents[2]
PROJECT = (str(ROOT / "llava_structlora"), str(ROOT / "recipes"))


class _Stop(Exception):
    pass


def _count(monkeypatch, owner, name: str) -> list[int]:
    calls, orig = [0], getattr(owner, name)

    def counted(*a, **k):
        calls[0] += 1
        return orig(*a, **k)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_rank_reaches_the_weights_in_six_calls_without_reentry(smoke, tmp_path, monkeypatch):
    parsed, seen = [], {}
    monkeypatch.setattr(train_main, "parse_config", lambda argv: parsed.append(cli.parse_config(argv)) or parsed[-1])
    builds = _count(monkeypatch, StructLoRAConfig, "__post_init__")
    orig_init = StructLoRALinear.__init__

    def first_layer(self, base, cfg, name):
        frames, frame = [], sys._getframe(1)
        while frame is not None and frame.f_code.co_name != "run_main":
            if frame.f_code.co_filename.startswith(PROJECT):
                frames.append((Path(frame.f_code.co_filename).relative_to(ROOT).as_posix(), frame.f_code.co_name))
            frame = frame.f_back
        orig_init(self, base, cfg, name)
        seen.update(stack=frames[::-1] + [("llava_structlora/structlora/layer.py", "__init__")], cfg=cfg)
        raise _Stop

    monkeypatch.setattr(StructLoRALinear, "__init__", first_layer)
    argv = ["--model_name_or_path", str(smoke["base"]), "--data_path", str(smoke["data"] / "coco" / "llava_train.json")]
    argv += ["--output_dir", str(tmp_path / "run"), "--lora_r", "3", "--report_to", "none", "--max_steps", "1"]
    with pytest.raises(_Stop):
        train_main.run(argv)
    stack = seen["stack"]
    files = [f for f, _ in stack]
    assert stack[0] == ("llava_structlora/train/main.py", "run") and len(stack) <= 6, stack
    assert len(set(files)) == len(files), f"a file is entered twice on the way to the weights: {stack}"
    assert seen["cfg"] is parsed[0].adapter and seen["cfg"].r == 3  # the parsed object itself, not a rebuild
    assert builds[0] == 1, "StructLoRAConfig is built once per training process"


def test_launcher_composes_and_parses_once_and_names_the_run_from_the_parse(tmp_path, monkeypatch):
    for name in ("MODEL", "DATA_ROOT", "OUTPUT_DIR", "METHOD", "RANK", "SEED", "RESUME", "ZERO", "ARCH"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "coco_smoke.yaml").write_text("task: coco\nmax_steps: 6\n")
    composed = _count(monkeypatch, finetune, "compose_argv")
    parses = _count(monkeypatch, transformers.HfArgumentParser, "parse_args_into_dataclasses")
    builds = _count(monkeypatch, StructLoRAConfig, "__post_init__")
    layout = RepoLayout(tmp_path)
    argv, cfg = finetune.train_config(layout, "coco", "smoke", ["--lora_r", "3", "--seed", "2"])
    assert (composed[0], parses[0], builds[0]) == (1, 1, 1)
    assert cfg.training.output_dir == str(layout.outputs / "coco-structlora-r3-s2-smoke")
    assert argv[-4:] == ["--data_path", cfg.data.data_path, "--output_dir", cfg.training.output_dir]
    assert not any("derived" in a for a in argv)  # no placeholder travels


def test_optimizer_groups_and_regularizer_use_the_handed_down_config(tiny_base, tmp_path, fake_data):
    from llava_structlora.train.methods import build_model
    from llava_structlora.train.trainer import StructLoRATrainer

    cfg = cli.parse_config(
        ["--output_dir", str(tmp_path), "--model_name_or_path", str(tiny_base), "--report_to", "none"],
        check_paths=False,
    )
    model = build_model(cfg.model, cfg.structlora, cfg.training.seed, 6, adapter=cfg.adapter)
    handed = dataclasses.replace(cfg.adapter, gate_lr_mult=7.0, lambda_ib=0.0)
    assert get_controller(model).cfg.gate_lr_mult == 300.0  # the model's own config is another one
    trainer = StructLoRATrainer(
        model=model, args=cfg.training, train_dataset=fake_data(), method="structlora", adapter_config=handed
    )
    groups = {g.get("name"): g["lr"] for g in trainer.create_optimizer().param_groups}
    assert groups["structlora_gates"] == pytest.approx(7.0 * cfg.training.learning_rate)
    assert float(trainer.spec.regularizer(model, handed)) == 0.0  # lambda_ib = 0 handed down
    assert float(trainer.spec.regularizer(model, cfg.adapter)) > 0.0
    assert torch.is_tensor(trainer.spec.regularizer(model))
