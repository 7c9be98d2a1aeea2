"""Every override of a PRIVATE `transformers.Trainer` method, in one place.

Written against transformers 5.23.0 (``TARGET_TRANSFORMERS``); tests/train/test_hf_overrides.py checks
that each of these methods still exists with the parameters used here, so an upgrade that renames or
re-signs one fails there, not silently in a run. What each one is for:

- ``_save``: a spec that owns its checkpoint weights (StructLoRA) saves only its own state, never the
  frozen base.
- ``_load_from_checkpoint``: resume without DeepSpeed from that state; other methods take the stock path
  with pickles restricted to weights_only (safe_resume.py).
- ``_save_optimizer_and_scheduler``: DeepSpeed checkpoints without the frozen base weights (adapter methods).
- ``_load_optimizer_and_scheduler``, ``_load_rng_state``: the stock loads, with weights_only pickles.
- ``_prepare_for_training``: a DeepSpeed resume loads non-strictly (its checkpoints hold only trainable
  tensors), with weights_only pickles; then the spec restores what DeepSpeed does not hold (the graph).
  Under ZeRO-3 the trainable tensors are then kept whole on every rank (zero3.py), with or without resume.
- ``save_model`` (public): under ZeRO-3 a spec owning its checkpoint weights saves them directly; the stock
  path would first gather the whole (7B) base on rank 0 (zero3.py keeps the adapter whole on every rank).
- ``_save_checkpoint``: stock checkpoint, then (after every rank wrote its shard) a COMPLETE marker, then
  rotation of complete checkpoints only.

The mixin expects ``self.spec`` (specs.MethodSpec) and ``self.projector_params`` (set by the Trainer).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
from torch import nn

from llava_structlora.rundir import RunDir

from .checkpoints import mark_complete, rotate_complete
from .safe_resume import weights_only_loads
from .zero3 import check_whole, engine_is_zero3, persist_trainable_parameters

logger = logging.getLogger(__name__)
TARGET_TRANSFORMERS = "5.23.0"
OVERRIDDEN = (
    "_save",
    "_load_from_checkpoint",
    "_save_optimizer_and_scheduler",
    "_load_optimizer_and_scheduler",
    "_load_rng_state",
    "_prepare_for_training",
    "_save_checkpoint",
    "save_model",
)


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class TrainerOverrides:
    """Mixin placed before transformers.Trainer in the MRO (see the module docstring)."""

    def _save(self, output_dir: Optional[str] = None, state_dict: Optional[dict] = None) -> None:
        if not self.spec.owns_checkpoint_weights:
            return super()._save(output_dir, state_dict)
        if self.args.should_save:
            self.spec.save_weights(
                self.accelerator.unwrap_model(self.model),
                Path(output_dir or self.args.output_dir),
                self.projector_params,
            )

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Optional[nn.Module] = None) -> None:
        if not self.spec.owns_checkpoint_weights:
            with weights_only_loads():
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        self.spec.load_weights(target, Path(resume_from_checkpoint))

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if not (self.is_deepspeed_enabled and not self.spec.full_model):
            return super()._save_optimizer_and_scheduler(output_dir)
        from accelerate.utils import DeepSpeedSchedulerWrapper

        self.model_wrapped.save_checkpoint(output_dir, exclude_frozen_parameters=True)
        if self.args.should_save and not isinstance(self.lr_scheduler, DeepSpeedSchedulerWrapper):
            torch.save(self.lr_scheduler.state_dict(), os.path.join(output_dir, "scheduler.pt"))

    def _load_optimizer_and_scheduler(self, checkpoint: Optional[str]) -> None:
        with weights_only_loads():  # never unpickle code from a checkpoint (safe_resume.py)
            return super()._load_optimizer_and_scheduler(checkpoint)

    def _load_rng_state(self, checkpoint: Optional[str]) -> None:
        with weights_only_loads():
            return super()._load_rng_state(checkpoint)

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        if self.spec.owns_checkpoint_weights and self.is_deepspeed_enabled and engine_is_zero3(self.model_wrapped):
            check_whole(self.model_wrapped.module, "at save time")
            return self._save(output_dir)
        return super().save_model(output_dir, _internal_call)

    def _persist_if_zero3(self) -> None:
        if self.is_deepspeed_enabled and engine_is_zero3(self.model_wrapped):
            persist_trainable_parameters(self.model_wrapped)  # collective: every rank runs this

    def _prepare_for_training(self, max_steps, train_dataloader, resume_from_checkpoint):
        if resume_from_checkpoint is None:
            out = super()._prepare_for_training(max_steps, train_dataloader, None)
            self._persist_if_zero3()
            return out
        if not self.is_deepspeed_enabled:
            with weights_only_loads():
                return super()._prepare_for_training(max_steps, train_dataloader, resume_from_checkpoint)
        model, train_dataloader = super()._prepare_for_training(max_steps, train_dataloader, None)
        with weights_only_loads():
            load_path, _ = self.model_wrapped.load_checkpoint(
                resume_from_checkpoint,
                load_module_strict=False,
                load_optimizer_states=True,
                load_lr_scheduler_states=True,
            )
        if load_path is None:
            raise RuntimeError(f"DeepSpeed could not resume from {resume_from_checkpoint}")
        self._persist_if_zero3()  # after the load: gathers the resumed values
        self._load_optimizer_and_scheduler(resume_from_checkpoint)
        self.spec.after_deepspeed_resume(self.accelerator.unwrap_model(self.model), Path(resume_from_checkpoint))
        logger.info("resumed DeepSpeed state from %s", load_path)
        return model, train_dataloader

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """A kill -9 mid-save leaves a directory without the marker, which RESUME=auto ignores; older
        complete checkpoints are deleted only once a newer one is complete."""
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        _barrier()
        ckpt = RunDir(self.args.output_dir).checkpoint(self.state.global_step)
        if self.args.should_save:
            mark_complete(ckpt, step=self.state.global_step, world_size=self.args.world_size)
            rotate_complete(self.args.output_dir, keep=limit)
        _barrier()
