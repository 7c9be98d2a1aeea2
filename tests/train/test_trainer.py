"""Trainer subclass in one process (the DeepSpeed path is covered by tests/scripts)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import transformers

from llava_structlora.train.checkpoints import MARKER, complete_checkpoints
from llava_structlora.train.cli import parse_args
from llava_structlora.train.methods import build_model, projector_param_names
from llava_structlora.train.trainer import StructLoRATrainer, TrainingDivergedError


def _collate(batch):
    return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}


def _trainer(base, out, *flags, data=None, **kw):
    m, _, s, t = parse_args(
        [
            "--output_dir",
            str(out),
            "--model_name_or_path",
            str(base),
            "--max_steps",
            "6",
            "--per_device_train_batch_size",
            "4",
            "--logging_steps",
            "1",
            "--save_steps",
            "2",
            "--report_to",
            "none",
            "--disable_tqdm",
            "true",
            "--use_cpu",
            "true",
            *flags,
        ],
        check_paths=False,
    )
    model = build_model(m, s, t.seed, total_steps=6)
    proj = projector_param_names(model) if m.tune_mm_projector else set()
    return StructLoRATrainer(
        model=model,
        args=t,
        train_dataset=data(),
        data_collator=_collate,
        method=m.method,
        mm_projector_lr=m.mm_projector_lr,
        projector_params=proj,
        **kw,
    )


class _StopAt(transformers.TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step >= self.step
        return control


def _losses(trainer):
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def test_lora_equals_structlora_without_filter_and_coordinator(tiny_base, tmp_path, fake_data):
    """Acceptance 4: both are plain LoRA, so the loss curves agree for the same seed."""
    lora = _trainer(tiny_base, tmp_path / "lora", "--method", "lora", data=fake_data)
    lora.train()
    sl = _trainer(
        tiny_base,
        tmp_path / "sl",
        "--method",
        "structlora",
        "--filter",
        "none",
        "--coordinator",
        "none",
        data=fake_data,
    )
    sl.train()
    a, b = _losses(lora), _losses(sl)
    assert len(a) == 6 and a[-1] != a[0]
    assert a == pytest.approx(b, rel=1e-5, abs=1e-6), (a, b)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_base, tmp_path, fake_data):
    tr = _trainer(tiny_base, tmp_path, "--method", "lora", inject_nan_step=3, data=fake_data)
    with pytest.raises(TrainingDivergedError, match=r"loss is nan at step 4.*checkpoint-2"):
        tr.train()
    kept = complete_checkpoints(tmp_path)
    assert [p.name for p in kept] == ["checkpoint-2"]
    assert json.loads((kept[0] / MARKER).read_text())["step"] == 2
    assert (kept[0] / "adapter_model.safetensors").is_file()


def test_projector_gets_its_own_lr_and_trains(tiny_base, tmp_path, fake_data):
    tr = _trainer(
        tiny_base,
        tmp_path,
        "--method",
        "structlora",
        "--coordinator",
        "gnn",  # the option with trained coordinator parameters (their own param group)
        "--tune_mm_projector",
        "true",
        "--mm_projector_lr",
        "1e-3",
        "--max_steps",
        "2",
        data=fake_data,
    )
    opt = tr.create_optimizer()
    proj_ids = {id(p) for n, p in tr.model.named_parameters() if n in tr.projector_params}
    assert proj_ids, "projector parameters must be trainable"
    lrs = {g.get("lr", tr.args.learning_rate) for g in opt.param_groups if {id(p) for p in g["params"]} & proj_ids}
    assert lrs == {1e-3}
    other = [g for g in opt.param_groups if not ({id(p) for p in g["params"]} & proj_ids)]
    own = {"structlora_gates": "gate_lr_mult", "structlora_coordinator": "coordinator_lr_mult"}
    assert other and all(g.get("lr", 2e-4) == 2e-4 for g in other if g.get("name") not in own)
    from llava_structlora.structlora import get_controller

    cfg = get_controller(tr.model).cfg  # gates / coordinator: their own lr multiplier, no weight decay
    for g in (g for g in other if g.get("name") in own):
        assert g["lr"] == pytest.approx(2e-4 * getattr(cfg, own[g["name"]])) and g["weight_decay"] == 0.0
    assert {g.get("name") for g in other} >= set(own)
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters() if n in tr.projector_params}
    tr.train()
    after = dict(tr.model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)


def test_structlora_resume_replays_uninterrupted_run(tiny_base, tmp_path, fake_data):
    """Single-process resume (the 2-rank DeepSpeed kill -9 test is in tests/scripts)."""
    from llava_structlora.structlora import structlora_state_dict

    flags = ("--method", "structlora", "--save_steps", "3", "--graph_refresh_steps", "2")  # graph refreshed at 2
    full = _trainer(tiny_base, tmp_path / "full", *flags, data=fake_data)
    full.train()
    part = _trainer(tiny_base, tmp_path / "part", *flags, data=fake_data)
    part.add_callback(_StopAt(3))  # same 6-step schedule, interrupted after checkpoint-3
    part.train()
    resumed = _trainer(tiny_base, tmp_path / "part", *flags, data=fake_data)
    resumed.train(resume_from_checkpoint=str(tmp_path / "part" / "checkpoint-3"))
    a, b = structlora_state_dict(full.model), structlora_state_dict(resumed.model)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert _losses(full) == pytest.approx(_losses(resumed), abs=1e-6)  # history 1-3 restored, 4-6 replayed


def test_tuned_projector_travels_in_the_stock_peft_adapter(tiny_base, tmp_path, fake_data):
    from peft import PeftModel
    from transformers import LlavaForConditionalGeneration

    from llava_structlora.train.outputs import export_adapter

    tr = _trainer(
        tiny_base, tmp_path, "--method", "structlora", "--tune_mm_projector", "true", "--max_steps", "2", data=fake_data
    )
    tr.train()
    adapter = export_adapter(tr, "structlora", tmp_path)
    loaded = PeftModel.from_pretrained(LlavaForConditionalGeneration.from_pretrained(tiny_base), str(adapter))
    trained = {n: p for n, p in tr.model.named_parameters() if n in tr.projector_params}
    got = {
        n.replace("base_model.model.", "").replace("modules_to_save.default.", ""): p
        for n, p in loaded.named_parameters()
        if "modules_to_save.default" in n
    }
    assert trained.keys() == got.keys()
    assert all(torch.equal(trained[n].detach(), got[n].detach()) for n in trained)
    assert (tmp_path / "structlora" / "mm_projector.safetensors").is_file()


@pytest.mark.parametrize("base", ["tiny_base", "tiny_base_layer_m2"])
def test_adalora_allocates_ranks_without_deepspeed(base, request, tmp_path, fake_data):
    from llava_structlora.train.callbacks import AdaLoraCallback

    tr = _trainer(request.getfixturevalue(base), tmp_path, "--method", "adalora", data=fake_data)
    tr.add_callback(AdaLoraCallback(tr))
    tr.train()
    cfg = tr.model.peft_config["default"]
    assert cfg.rank_pattern, "the final budget allocation ran (needs gradients at on_optimizer_step)"
    assert sum(sum(m) for m in cfg.rank_pattern.values()) <= cfg.target_r * len(cfg.rank_pattern)
    assert all(torch.isfinite(torch.tensor(_losses(tr))))


def test_coordinator_graph_round_trips_through_checkpoints(tiny_base, tmp_path):
    """Refreshed similarity edges live in no state dict: checkpoints carry them (save_structlora's one graph
    serialization, StructLoRAGraph.to_json), and a DeepSpeed resume restores them from there."""
    from llava_structlora.structlora import StructLoRAGraph, get_controller, save_structlora
    from llava_structlora.train.specs import get_spec

    _, _, s, t = parse_args(["--output_dir", str(tmp_path), "--model_name_or_path", str(tiny_base)], check_paths=False)
    m, _, _, _ = parse_args(["--output_dir", str(tmp_path)], check_paths=False)
    m = dataclasses.replace(m, model_name_or_path=str(tiny_base))  # the parsed options are frozen
    trained, fresh = build_model(m, s, 0, 6), build_model(m, s, 0, 6)
    ctrl = get_controller(trained)
    kept = ctrl.graph.edges[::2]  # stands in for a refresh that changed the edges
    ctrl.set_graph(StructLoRAGraph(nodes=ctrl.nodes, edges=kept))
    save_structlora(trained, tmp_path / "ckpt")
    assert get_controller(fresh).graph.edges != kept
    get_spec("structlora").after_deepspeed_resume(fresh, tmp_path / "ckpt")
    assert get_controller(fresh).graph.edges == kept
    assert torch.equal(get_controller(fresh).adj, ctrl.adj)
