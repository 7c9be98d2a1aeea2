"""Every --method adapts the same target modules (fair baselines); full trains the LM only."""

from __future__ import annotations

import re

import pytest

from llava_structlora.train.cli import parse_args
from llava_structlora.train.config import ConfigError
from llava_structlora.train.methods import build_model

TARGET = re.compile(r"(vision_tower|language_model)\..*layers\.(\d+)\.self_attn\.(q_proj|v_proj)")


def _build(base, method, *flags):
    m, _, s, t = parse_args(
        ["--output_dir", "/tmp/unused", "--model_name_or_path", str(base), "--method", method, *flags],
        check_paths=False,
    )
    return build_model(m, s, t.seed, total_steps=100)


def _adapted(model):
    """(tower, layer, proj) of modules that own trainable parameters."""
    found = set()
    for name, p in model.named_parameters():
        if p.requires_grad and (hit := TARGET.search(name)):
            found.add(hit.groups())
    return found


@pytest.mark.parametrize("method", ["lora", "dora", "lora_dropout", "adalora"])
def test_baselines_share_structlora_targets(tiny_base, method):
    expected = _adapted(_build(tiny_base, "structlora"))
    assert len(expected) == 8  # 2 towers x 2 layers x {q, v}
    model = _build(tiny_base, method)
    assert _adapted(model) == expected
    assert all(TARGET.search(n) for n, p in model.named_parameters() if p.requires_grad)


def test_dora_and_dropout_configs(tiny_base):
    dora = _build(tiny_base, "dora")
    assert dora.peft_config["default"].use_dora
    drop = _build(tiny_base, "lora_dropout")
    assert drop.peft_config["default"].lora_dropout == 0.1
    with pytest.raises(ConfigError, match="lora_dropout > 0"):
        _build(tiny_base, "lora_dropout", "--lora_dropout", "0")


def test_full_trains_language_model_only(tiny_base):
    model = _build(tiny_base, "full")
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("language_model" in n or "lm_head" in n for n in names)
    assert not any("vision_tower" in n for n in names)
