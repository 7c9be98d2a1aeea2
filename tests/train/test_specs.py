"""Methods as spec objects: one registry, and no method-name branches left in the training code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llava_structlora.train.cli import parse_args
from llava_structlora.train.config import METHODS, ConfigError
from llava_structlora.train.specs import SPECS, MethodSpec, get_spec

TRAIN = Path(__file__).resolve().parents[2] / "llava_structlora" / "train"


def test_registry_is_the_method_list():
    assert METHODS == tuple(SPECS) == ("structlora", "lora", "dora", "adalora", "lora_dropout", "full")
    assert all(isinstance(s, MethodSpec) and s.name == n for n, s in SPECS.items())
    with pytest.raises(ConfigError, match="method='qlora'"):
        get_spec("qlora")


def test_no_method_string_branches_in_train():
    for path in TRAIN.glob("*.py"):
        hits = re.findall(r"method\s*(?:==|!=|in\s*\()", path.read_text())
        assert not hits, f"{path.name}: {hits}"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--method", "adalora", "--deepspeed", "zero_configs/zero2.json"], "NO_DEEPSPEED=1"),
        (["--method", "lora_dropout", "--lora_dropout", "0"], "lora_dropout > 0"),
        (["--method", "full", "--bits", "4"], "cannot be fully fine-tuned"),
    ],
)
def test_spec_checks_run_before_launch(argv, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        parse_args(["--output_dir", "/tmp/unused", *argv], check_paths=False, with_deepspeed=False)


def test_spec_properties():
    assert get_spec("lora_dropout").dropout(type("M", (), {"lora_dropout": None})()) == 0.1
    assert get_spec("lora").dropout(type("M", (), {"lora_dropout": None})()) == 0.0
    assert get_spec("full").full_model and not get_spec("lora").full_model
    assert get_spec("structlora").owns_checkpoint_weights and not get_spec("dora").owns_checkpoint_weights
    assert all(get_spec(m).peft for m in ("lora", "dora", "adalora", "lora_dropout"))
