"""Activation (gradient) checkpointing under the real HF Trainer: same losses and gradients, less memory.

Checkpointing only recomputes activations in backward; with dropout off every number must match the
plain run (StructLoRA's plans are installed once per top-level forward, so the recompute sees the same
gate samples and coefficients).
"""

from __future__ import annotations

import pytest
import torch
import transformers

from llava_structlora.train.cli import parse_args
from llava_structlora.train.methods import build_model
from llava_structlora.train.trainer import StructLoRATrainer


def _collate(batch):
    return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}


class _GradTap(transformers.TrainerCallback):
    """Copies every trainable gradient just before each optimizer step."""

    def __init__(self) -> None:
        self.grads: list[dict[str, torch.Tensor]] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads.append(
            {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
        )


def _run(base, out, data, method: str, checkpointing: bool):
    flags = [
        "--output_dir",
        str(out),
        "--model_name_or_path",
        str(base),
        "--method",
        method,
        "--max_steps",
        "3",
        "--per_device_train_batch_size",
        "4",
        "--logging_steps",
        "1",
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--use_cpu",
        "true",
        "--seed",
        "3",
    ]
    if checkpointing:
        flags += ["--gradient_checkpointing", "true"]
    m, _, s, t = parse_args(flags, check_paths=False)
    model = build_model(m, s, t.seed, total_steps=3, gradient_checkpointing=checkpointing)
    tap = _GradTap()
    trainer = StructLoRATrainer(
        model=model, args=t, train_dataset=data(), data_collator=_collate, method=m.method, callbacks=[tap]
    )
    trainer.train()
    used = any(getattr(mod, "gradient_checkpointing", False) for mod in trainer.model.modules())
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return used, losses, tap.grads


@pytest.mark.parametrize("method", ["structlora", "lora"])
def test_checkpointing_gives_the_same_losses_and_gradients(tiny_base, tmp_path, fake_data, method):
    used_off, loss_off, grads_off = _run(tiny_base, tmp_path / "off", fake_data, method, False)
    used_on, loss_on, grads_on = _run(tiny_base, tmp_path / "on", fake_data, method, True)
    assert not used_off and used_on, "the --gradient_checkpointing run must actually checkpoint the layers"
    assert len(loss_on) == 3 and loss_on == pytest.approx(loss_off, rel=1e-5, abs=1e-6)
    assert len(grads_on) == len(grads_off) == 3
    for step, (a, b) in enumerate(zip(grads_off, grads_on)):
        assert a.keys() == b.keys() and len(a) > 0
        nonzero = 0
        for name in a:
            torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-7, msg=f"step {step}: {name}")
            nonzero += int(a[name].abs().sum() > 0)
        assert nonzero > 0, f"step {step}: all gradients are zero, the comparison would be vacuous"
