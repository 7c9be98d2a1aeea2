"""recipes/toy_defaults.py: every learning rate is the study's validation pick in the record it cites, and the
recipe applies it only on the studied tiny base, below the YAML and the flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recipes import finetune
from recipes.layout import RepoLayout
from recipes.toy_defaults import STUDY_RECORD, TOY_LR, toy_defaults

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"StructLoRA": "structlora", "LoRA": "lora", "DoRA": "dora", "AdaLoRA": "adalora"}


def _record(method: str) -> dict:
    return json.loads((ROOT / "docs" / "results" / f"{STUDY_RECORD[method]}.json").read_text())["data"]


def test_every_lr_is_the_validation_argmax_of_the_cited_record():
    assert {m for _, m in TOY_LR} == set(STUDY_RECORD)  # nothing missing, nothing invented
    for (task, method), lr in TOY_LR.items():
        tuned = _record(method)["tuned"]
        entry = tuned[task][method]
        val = {float(k): v for k, v in entry["val"].items()}
        assert lr == pytest.approx(entry["lr"]) == pytest.approx(max(val, key=val.get)), (task, method)
        grid = sorted(val)
        if method == "structlora":  # the recipe's default method: the pick is interior, not at a grid edge
            assert grid[0] < lr < grid[-1], (task, grid)
    for method in set(STUDY_RECORD):
        tuned = _record(method)["tuned"]
        assert {t for t in tuned if method in tuned[t]} == {t for t, m in TOY_LR if m == method}, method
    for name, method in METHODS.items():  # the reported rows were trained at these lrs too
        rows = _record(method)["rows"]
        for task in ("coco", "vqav2", "gqa"):
            assert rows[name][task]["lr"] == pytest.approx(TOY_LR[(task, method)]), (name, task)


@pytest.fixture
def layout(tmp_path, monkeypatch) -> RepoLayout:
    for name in ("MODEL", "SMOKE", "ARCH", "METHOD", "RANK", "OUTPUT_DIR", "DATA_ROOT", "RESUME", "ZERO"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "configs").mkdir()
    for task in ("coco", "vqav2", "gqa", "mix"):
        (tmp_path / "configs" / f"{task}.yaml").write_text(f"task: {task}\n")
    return RepoLayout(tmp_path)


def _lr(layout: RepoLayout, task: str, *cli: str) -> float:
    from llava_structlora.train.config import parse_config

    argv, cfg = finetune.train_config(layout, task, "default", list(cli))
    again = parse_config(argv, check_paths=False, with_deepspeed=False)  # what the launched ranks parse
    assert again.training.learning_rate == cfg.training.learning_rate
    return cfg.training.learning_rate


def test_recipe_uses_the_validated_lr_only_on_the_tiny_base(layout, monkeypatch):
    assert _lr(layout, "coco") == 2e-2 and _lr(layout, "vqav2") == 2e-4 and _lr(layout, "gqa") == 5e-3
    assert _lr(layout, "coco", "--learning_rate", "3e-4") == 3e-4  # a flag still wins
    assert _lr(layout, "mix") == 2e-4  # not in the study: the paper's lr
    monkeypatch.setenv("METHOD", "lora")
    assert _lr(layout, "vqav2") == 2e-4 and _lr(layout, "gqa") == 5e-3
    monkeypatch.setenv("METHOD", "full")
    assert _lr(layout, "coco") == 2e-4
    monkeypatch.delenv("METHOD")
    monkeypatch.setenv("MODEL", "/models/llava-1.5-7b-hf")  # a real base keeps the paper's recipe
    assert _lr(layout, "coco") == 2e-4
    monkeypatch.delenv("MODEL")
    monkeypatch.setenv("ARCH", "next")  # not the studied base
    assert _lr(layout, "coco") == 2e-4
    (layout.configs / "coco.yaml").write_text("task: coco\nlearning_rate: 1e-3\n")
    monkeypatch.delenv("ARCH")
    assert _lr(layout, "coco") == 1e-3  # the YAML still wins over the recipe default


def test_toy_defaults_needs_the_studied_base(layout):
    assert toy_defaults("coco", "structlora", layout.base("default"), layout) == {"learning_rate": 2e-2}
    assert toy_defaults("coco", "structlora", layout.base("smoke"), layout) == {}
    assert toy_defaults("coco", "structlora", layout.base("default", "next"), layout) == {}


def test_score_line_prints_the_gain():
    line = finetune.score_line("coco", "val", {"adapter": {"CIDEr": 4.25}, "base": {"CIDEr": 3.0}})
    assert line == "coco val CIDEr: adapter 4.2500 | base 3.0000 | gain +1.2500"
    tie = finetune.score_line("coco", "val", {"adapter": {"CIDEr": 0.0017}, "base": {"CIDEr": 0.00170000001}})
    assert tie.endswith("gain +0.0000")  # a zero gain has no minus sign
