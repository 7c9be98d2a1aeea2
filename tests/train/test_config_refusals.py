"""Configuration that would do nothing, or the wrong thing, is refused before any model is built: exit 2, the
file named, no traceback (issue #24, classes "configuration accepted" and "found only after the expensive part")."""

from __future__ import annotations

import shutil

import pytest

from llava_structlora.evaluation import EvalConfig, evaluate
from llava_structlora.evaluation.__main__ import build_parser as eval_parser
from llava_structlora.structlora import StructLoRAConfig
from llava_structlora.train import main as train_main
from llava_structlora.train.cli import parse_config, train_parser
from llava_structlora.train.config import ConfigError
from llava_structlora.train.validation import check_eval_inputs


def _parse(*argv: str):
    return parse_config(["--output_dir", "/tmp/unused", *argv], check_paths=False)


def _refused(capsys, monkeypatch, argv: list[str], *needles: str) -> str:
    """train's entry point exits 2 with one message (no traceback) before anything is built."""
    monkeypatch.setattr(train_main, "load_processor", lambda *a: pytest.fail("a model was loaded"))
    assert train_main.main(["--output_dir", "/tmp/unused", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "[train] error:" in err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("flags", [["--max_steps", "0"], ["--num_train_epochs", "0"]])
def test_zero_steps_is_an_error(capsys, monkeypatch, flags):
    _refused(capsys, monkeypatch, flags, "would train 0 steps")
    _parse("--max_steps", "1", "--num_train_epochs", "0")  # max_steps wins over epochs: fine


def test_duplicated_yaml_key_names_file_key_and_lines(tmp_path, capsys, monkeypatch):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("learning_rate: 2.0e-4\nlora_r: 4\nlearning_rate: 2.0e-2\n")
    _refused(capsys, monkeypatch, ["--config", str(recipe)], str(recipe), "'learning_rate' is given twice", "1 and 3")


@pytest.mark.parametrize("targets", ["", "  "])
def test_empty_targets_are_refused(capsys, monkeypatch, targets):
    _refused(capsys, monkeypatch, ["--targets", targets], "targets=", "matches every linear layer")
    with pytest.raises(ValueError, match="non-empty regex"):
        StructLoRAConfig(targets=[""])


def test_structlora_knob_for_another_method_is_refused(tmp_path, capsys, monkeypatch):
    _refused(capsys, monkeypatch, ["--method", "lora", "--coordinator", "laplacian"], "coordinator='laplacian'")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: dora\ngate_lr_mult: 10\n")
    _refused(capsys, monkeypatch, ["--config", str(recipe)], "gate_lr_mult=10.0", "method=dora", str(recipe))
    _parse("--method", "lora", "--coordinator", "coupling")  # the default value changes nothing: accepted
    _parse("--method", "lora", "--keep_dead_layers", "true")  # the target resolver's: every method uses it
    _parse("--coordinator", "laplacian")  # StructLoRA itself


def test_projector_lr_without_tuning_the_projector_is_refused(capsys, monkeypatch):
    _refused(capsys, monkeypatch, ["--mm_projector_lr", "2e-5"], "without tune_mm_projector")
    _parse("--mm_projector_lr", "2e-5", "--tune_mm_projector", "true")


def _split_world(smoke, tmp_path):
    """A copy of the smoke world's coco task whose val questions are the test split's."""
    root = tmp_path / "data"
    shutil.copytree(smoke["data"] / "coco", root / "coco", symlinks=True)
    shutil.copy(root / "coco" / "test_questions.jsonl", root / "coco" / "val_questions.jsonl")
    return root


def test_eval_split_typo_is_found_before_training(smoke, tmp_path, capsys, monkeypatch):
    argv = ["--model_name_or_path", str(smoke["base"]), "--task", "coco", "--data_root", str(smoke["data"])]
    argv += ["--data_path", str(smoke["data"] / "coco" / "llava_train.json"), "--eval_split", "vall"]
    err = _refused(capsys, monkeypatch, argv, "eval_split vall", "vall_questions.jsonl")
    assert "the splits there: test, val" in err
    assert "eval_split" in {a.dest for a in train_parser()._actions}  # the message names a real option


def test_question_file_of_another_split_is_found_before_training_and_generation(smoke, tmp_path):
    root = _split_world(smoke, tmp_path)
    with pytest.raises(ConfigError, match=r"val_questions\.jsonl: 16 of 16 question ids .* different splits"):
        check_eval_inputs(str(root), ("coco",), "val")
    cfg = EvalConfig(
        task="coco", split="val", model=str(smoke["base"]), data_root=str(root), output_dir=str(tmp_path / "o")
    )
    with pytest.raises(ValueError, match="different splits"):
        evaluate(cfg)
    assert not (tmp_path / "o" / "answers").exists()  # refused before a single answer


def test_evaluation_messages_name_flags_that_exist(smoke, tmp_path):
    cfg = EvalConfig(task="gqa", model=str(smoke["base"]), data_root=str(smoke["data"]), output_dir=str(tmp_path))
    cfg.split = "tesdev"
    with pytest.raises(FileNotFoundError, match=r"--split tesdev: .*\(the splits there: testdev, val\)") as e:
        evaluate(cfg)
    from recipes.evaluate import build_parser as recipe_parser

    for parser in (eval_parser(), recipe_parser()):
        flags = {o for a in parser._actions for o in a.option_strings}
        assert "--split" in flags and "--output-dir" in flags and "--overwrite" in flags
    assert "--split" in str(e.value)


def test_the_recipe_refuses_before_launching(smoke, tmp_path, monkeypatch, capfd):
    """Through `python -m recipes.finetune`: configuration errors and a mistyped eval split (EVAL=1) exit 2
    before anything is launched."""
    from pathlib import Path

    from recipes import finetune
    from recipes.layout import RepoLayout

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "configs").symlink_to(repo / "configs")
    (tmp_path / "zero_configs").symlink_to(repo / "zero_configs")
    for name in ("OUTPUT_DIR", "METHOD", "RANK", "SEED", "RESUME", "ZERO", "ARCH"):
        monkeypatch.delenv(name, raising=False)
    for k, v in {"SMOKE": "1", "NO_DEEPSPEED": "1", "NUM_GPUS": "1", "EVAL": "1", "MODEL": str(smoke["base"])}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DATA_ROOT", str(smoke["data"]))
    monkeypatch.setattr(finetune, "run_launcher", lambda *a, **k: pytest.fail("training was launched"))
    layout = RepoLayout(tmp_path)
    for flags, needle in (
        (["--eval_split", "vall"], "the splits there: test, val"),
        (["--max_steps", "0"], "would train 0 steps"),
        (["--method", "lora", "--gate_lr_mult", "10"], "gate_lr_mult=10.0"),
    ):
        assert finetune.main(["--task", "coco", *flags], layout=layout) == 2
        err = capfd.readouterr().err
        assert needle in err and "Traceback" not in err, err
        assert "configs/coco_smoke.yaml" in err or "eval_split" in err  # the YAML the options came from
