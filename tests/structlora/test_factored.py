"""Acceptance 6: the training path never materializes a d_out x d_in update (forward or backward)."""

from __future__ import annotations

import torch
from conftest import tiny_batch, tiny_llava
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from llava_structlora.structlora import StructLoRAConfig, apply_structlora, get_controller, structlora_regularizer


class SquareOutputs(TorchDispatchMode):
    """Records every aten op that creates a new (non-aliasing) tensor of one of the watched shapes."""

    def __init__(self, shapes, weights):
        super().__init__()
        self.shapes = set(shapes)
        self.storages = {w.untyped_storage().data_ptr() for w in weights}
        self.hits: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if (
                isinstance(t, torch.Tensor)
                and tuple(t.shape) in self.shapes
                and t.untyped_storage().data_ptr() not in self.storages
            ):
                self.hits.append(str(func))
        return out


def _run(cfg: StructLoRAConfig, materialize: bool = False) -> list[str]:
    # distinct widths: vision q/v are 36 x 36, LM q/v 52 x 52
    # (not multiples of r, so no stacked factor has those shapes)
    model = apply_structlora(tiny_llava(hidden=36, text_hidden=52, text_heads=2), cfg)
    ctrl = get_controller(model)
    with torch.no_grad():
        for l in ctrl.layers:
            l.lora_B.normal_()
    model.train()
    frozen = [p for p in model.parameters() if not p.requires_grad]
    batch = tiny_batch(0)
    with SquareOutputs({(36, 36), (52, 52)}, frozen) as mode:
        loss = model(**batch).loss + structlora_regularizer(model)
        loss.backward()
        if materialize:  # the detector's positive control: a dense update IS caught
            ctrl.layers[0].delta_weight(None)
    return mode.hits


def test_training_step_is_factored():
    for cfg in (
        StructLoRAConfig(),
        StructLoRAConfig(coordinator="laplacian_penalty", gate="gaussian"),
        StructLoRAConfig(coordinator="laplacian", gnn_layers=2, gnn_type="gcn"),
    ):
        assert _run(cfg) == [], cfg


def test_detector_catches_materialization():
    assert _run(StructLoRAConfig(), materialize=True)
