"""Export format details: rank_pattern, dropped closed directions, SVD compression with reported error."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import tiny_llava, train_steps
from peft import PeftModel
from safetensors import safe_open

from llava_structlora.structlora import StructLoRAConfig, apply_structlora, export_peft_adapter, get_controller
from llava_structlora.structlora.model import eval_plans


@pytest.fixture(scope="module")
def trained():
    model = apply_structlora(tiny_llava(0), StructLoRAConfig(graph="adjacency"))
    train_steps(model, steps=3)
    with torch.no_grad():  # close two directions of one layer: the export must drop them
        get_controller(model).layers[0].gate.log_alpha[:2] = -20.0
    return model


def _dense_updates(model):
    ctrl, _, plans = eval_plans(model)
    return {l.module_name: l.delta_weight(plans[i]) for i, l in enumerate(ctrl.layers)}


def test_ranks_and_closed_directions(trained, tmp_path):
    out = export_peft_adapter(trained, tmp_path / "a")
    cfg = json.loads((out / "adapter_config.json").read_text())
    info = json.loads((out / "structlora_export.json").read_text())
    ctrl = get_controller(trained)
    assert cfg["peft_type"] == "LORA" and len(cfg["target_modules"]) == 14  # dead vision layer 3 not adapted
    smooth = ctrl.smooth.sum(1)  # smooth_edges=chain: the depth chain of each projection type
    assert int(smooth.max()) <= 2
    first = ctrl.layers[0].module_name
    touches_first = ctrl.smooth[0].clone()
    touches_first[0] = True  # layer 0 and its smoothing neighbours all carry layer 0's closed directions
    for i, l in enumerate(ctrl.layers):
        expected = 8 * (1 + int(smooth[i])) - (2 if touches_first[i] else 0)
        assert info["ranks"][l.module_name] == expected
    assert info["relative_error"] == 0.0
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert f"base_model.model.{first}.lora_A.weight" in keys and len(keys) == 28


def test_svd_compression_reports_the_true_error(trained, tmp_path):
    dense = _dense_updates(trained)
    out = export_peft_adapter(trained, tmp_path / "c", max_rank=4)
    info = json.loads((out / "structlora_export.json").read_text())
    assert max(info["ranks"].values()) == 4
    base = tiny_llava(0)
    peft_model = PeftModel.from_pretrained(base, str(out)).eval()
    num = den = 0.0
    for name, d in dense.items():
        mod = peft_model.base_model.model.get_submodule(name)
        approx = mod.get_delta_weight("default")
        num += float(((approx - d) ** 2).sum())
        den += float((d**2).sum())
        assert torch.linalg.matrix_rank(approx) <= 4
    assert math.isclose(info["relative_error"], math.sqrt(num / den), rel_tol=1e-3)
    assert 0 < info["relative_error"] < 1
    assert f"{info['relative_error']:.6g}" in (out / "README.md").read_text()
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        assert float(f.metadata()["structlora_relative_error"]) == pytest.approx(info["relative_error"])
    # lossless when max_rank covers every stacked rank
    full = export_peft_adapter(trained, tmp_path / "f", max_rank=64)
    assert json.loads((full / "structlora_export.json").read_text())["relative_error"] == 0.0


def test_bad_max_rank(trained, tmp_path):
    with pytest.raises(ValueError, match="max_rank"):
        export_peft_adapter(trained, tmp_path / "x", max_rank=0)
