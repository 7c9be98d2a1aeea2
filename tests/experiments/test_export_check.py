"""experiments/export_check.py: an exported adapter is compared with its run's saved final state; a mismatch shows."""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file

from experiments.export_check import run_error


def test_run_error_is_zero_for_a_faithful_export_and_sees_a_perturbed_one(tmp_path):
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    from llava_structlora.structlora import (
        StructLoRAConfig,
        apply_structlora,
        export_peft_adapter,
        get_controller,
        save_structlora,
    )
    from tests.tiny_configs import tiny_vision_text

    vc, tc = tiny_vision_text()
    torch.manual_seed(0)
    base = LlavaForConditionalGeneration(LlavaConfig(vision_config=vc, text_config=tc, image_token_index=99))
    base.save_pretrained(tmp_path / "base")
    model = apply_structlora(base, StructLoRAConfig(coordinator="gnn"))
    ctrl = get_controller(model)
    with torch.no_grad():
        ctrl.coordinator.gnn.edge_src.normal_(0, 3.0)  # learned-looking edge weights
        for layer in ctrl.layers:
            layer.lora_B.normal_()
    run = tmp_path / "run"
    export_peft_adapter(model, run / "adapter")
    save_structlora(model, run / "structlora")
    assert run_error(run, tmp_path / "base") < 1e-6
    path = run / "adapter" / "adapter_model.safetensors"
    sd = load_file(str(path))
    key = next(k for k in sd if "lora_B" in k)
    sd[key] = sd[key] * 1.01
    save_file(sd, str(path))
    assert run_error(run, tmp_path / "base") > 5e-3
