"""HF Trainer subclass: StructLoRA regularizer and step hook, projector lr group, NaN stop,
complete-only checkpoints, frozen-weight-free DeepSpeed checkpoints.

Everything else (DeepSpeed ZeRO engine, AdamW, cosine schedule with warm-up, logging, RNG/optimizer/
scheduler checkpointing, data order on resume) is the stock Trainer.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
import transformers
from torch import nn

from .checkpoints import mark_complete, rotate_complete
from .safe_resume import weights_only_loads

logger = logging.getLogger(__name__)
PROJECTOR_FILE = "mm_projector.safetensors"
GRAPH_FILE = "structlora_graph.json"


class TrainingDivergedError(RuntimeError):
    """The loss became NaN/inf: training stops; the newest complete checkpoint is untouched."""


def _any_rank(flag: bool) -> bool:
    """True if `flag` is true on any rank (keeps all ranks stopping together, no hang)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def save_graph(model: nn.Module, path: Path) -> None:
    """The coordinator's current graph (similarity edges are refreshed from parameters during
    training and are not part of any state dict), so that a resumed run uses the same graph."""
    from llava_structlora.structlora import get_controller
    from llava_structlora.utils.io import atomic_write_json

    ctrl = get_controller(model)
    atomic_write_json(path, {"nodes": [n.name for n in ctrl.nodes], "edges": [list(e) for e in ctrl.graph.edges]})


def restore_graph(model: nn.Module, path: Path) -> None:
    from llava_structlora.structlora import StructLoRAGraph, get_controller

    if not path.is_file():
        raise FileNotFoundError(f"{path}: StructLoRA checkpoint without its coordinator graph")
    saved = json.loads(path.read_text())
    ctrl = get_controller(model)
    if saved["nodes"] != [n.name for n in ctrl.nodes]:
        raise ValueError(f"{path}: graph nodes do not match the model's adapted layers")
    ctrl.set_graph(StructLoRAGraph(nodes=ctrl.nodes, edges=[(int(i), int(j), str(k)) for i, j, k in saved["edges"]]))


def step_seed(seed: int, step: int, rank: int) -> int:
    return (int(seed) * 1_000_003 + int(step) * 7919 + int(rank) * 104_729) % (2 ** 63 - 1)


class StructLoRATrainer(transformers.Trainer):
    """Trainer for every `--method`; StructLoRA-specific hooks are no-ops for the baselines."""

    def __init__(self, *args: Any, method: str = "structlora", mm_projector_lr: Optional[float] = None,
                 projector_params: Optional[set[str]] = None, keep_checkpoints: Optional[int] = 2,
                 inject_nan_step: Optional[int] = None, step_sleep: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.method = method
        self.mm_projector_lr = mm_projector_lr
        self.projector_params = projector_params or set()
        self.keep_checkpoints = keep_checkpoints
        self.inject_nan_step = inject_nan_step
        self.step_sleep = step_sleep
        self._last_hook_step = -1

    # ------------------------------------------------------------------ optimizer
    def create_optimizer(self, model: Optional[nn.Module] = None):
        """AdamW with param groups: decay / no-decay, and the projector at `mm_projector_lr` (LLaVA)."""
        if self.optimizer is not None:
            return self.optimizer
        model = model if model is not None else self.model
        decay = set(self.get_decay_parameter_names(model))
        lr, wd = self.args.learning_rate, self.args.weight_decay
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        sl_groups, sl_names = [], set()
        if self.method == "structlora":  # factors / gates / coordinator at their own lr (gate_lr_mult...)
            from llava_structlora.structlora.optim import structlora_param_groups, structlora_param_names

            sl_groups, sl_names = structlora_param_groups(model, lr, wd), set(structlora_param_names(model))
        for name, p in model.named_parameters():
            if not p.requires_grad or name in sl_names:
                continue
            proj = name in self.projector_params and self.mm_projector_lr is not None
            groups.setdefault((name in decay, proj), []).append(p)
        param_groups = [
            {"params": ps, "weight_decay": wd if is_decay else 0.0,
             **({"lr": self.mm_projector_lr} if is_proj else {})}
            for (is_decay, is_proj), ps in sorted(groups.items())
        ] + sl_groups
        cls, kwargs = transformers.Trainer.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = cls(param_groups, **kwargs)
        return self.optimizer

    # ------------------------------------------------------------------ loss
    def _structlora_model(self) -> Optional[nn.Module]:
        return self.accelerator.unwrap_model(self.model) if self.method == "structlora" else None

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None) -> torch.Tensor:
        """Once per optimizer step, before its first forward: reseed, then structlora_on_step.

        Reseeding from (seed, step, rank) makes each step's randomness (gate noise, dropout) a function of
        the step alone, so a resumed run replays exactly what an uninterrupted one does, however the
        Trainer's RNG snapshot and batch prefetch interleave around a checkpoint.
        """
        sl = self._structlora_model()
        step = self.state.global_step
        if step != self._last_hook_step:
            torch.manual_seed(step_seed(self.args.seed, step, self.args.process_index))
        if sl is not None and step != self._last_hook_step:
            from llava_structlora.structlora import structlora_on_step

            structlora_on_step(sl, step, self.state.max_steps)
        if step != self._last_hook_step and self.step_sleep > 0:
            time.sleep(self.step_sleep)  # test hook (LLAVA_SL_DEBUG_STEP_SLEEP)
        self._last_hook_step = step
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch=None):
        """Task loss (+ StructLoRA regularizer), with a NaN/inf stop agreed by all ranks."""
        out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        loss, outputs = (out if return_outputs else (out, None))
        sl = self._structlora_model()
        if sl is not None:
            from llava_structlora.structlora import structlora_regularizer

            loss = loss + structlora_regularizer(sl).to(loss.dtype)
        if self.inject_nan_step is not None and self.state.global_step >= self.inject_nan_step:
            loss = loss * float("nan")  # fault injection for tests (--debug_nan_at_step)
        if _any_rank(not bool(torch.isfinite(loss.detach()).all())):
            self._diverged(float(loss.detach().float().mean()))
        return (loss, outputs) if return_outputs else loss

    def _diverged(self, value: float) -> None:
        from .checkpoints import newest_complete

        last = newest_complete(self.args.output_dir)
        where = f"last good checkpoint kept: {last}" if last else "no checkpoint had been written yet"
        raise TrainingDivergedError(
            f"loss is {value} at step {self.state.global_step + 1} (method={self.method}); stopping. {where}. "
            "Lower learning_rate, check the data, or resume from that checkpoint with RESUME=auto.")

    # ------------------------------------------------------------------ checkpoints
    def _save(self, output_dir: Optional[str] = None, state_dict: Optional[dict] = None) -> None:
        """StructLoRA: save only its state (adapter + coordinator), never the frozen base."""
        if self.method != "structlora":
            return super()._save(output_dir, state_dict)
        if self.args.should_save:
            from llava_structlora.structlora import save_structlora

            from llava_structlora.utils.io import atomic_save_safetensors

            model = self.accelerator.unwrap_model(self.model)
            save_structlora(model, output_dir or self.args.output_dir)
            save_graph(model, Path(output_dir or self.args.output_dir) / GRAPH_FILE)
            projector = {n: p.detach() for n, p in model.named_parameters() if n in self.projector_params}
            if projector:
                atomic_save_safetensors(projector, Path(output_dir or self.args.output_dir) / PROJECTOR_FILE)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Optional[nn.Module] = None) -> None:
        """Without DeepSpeed: StructLoRA checkpoints hold save_structlora's state, not model weights."""
        if self.method != "structlora":
            with weights_only_loads():
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
        from llava_structlora.structlora import load_structlora

        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        load_structlora(target, resume_from_checkpoint)
        restore_graph(target, Path(resume_from_checkpoint) / GRAPH_FILE)
        proj_file = Path(resume_from_checkpoint) / PROJECTOR_FILE
        if proj_file.is_file():
            from safetensors.torch import load_file

            missing = set(load_file(str(proj_file))) - {n for n, _ in target.named_parameters()}
            if missing:
                raise RuntimeError(f"{proj_file}: tensors not in the model: {sorted(missing)[:3]}")
            target.load_state_dict(load_file(str(proj_file)), strict=False)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        """DeepSpeed checkpoints without frozen base weights (also for non-PEFT StructLoRA)."""
        if not (self.is_deepspeed_enabled and self.method != "full"):
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

    def _prepare_for_training(self, max_steps, train_dataloader, resume_from_checkpoint):
        """Resume DeepSpeed non-strictly: its checkpoints hold only the trainable tensors.

        DeepSpeed's own loads use weights_only=False; weights_only_loads() forces them to the
        allow-listed weights_only=True path, so a planted pickle is refused, never run.
        """
        if resume_from_checkpoint is None:
            return super()._prepare_for_training(max_steps, train_dataloader, None)
        if not self.is_deepspeed_enabled:
            with weights_only_loads():
                return super()._prepare_for_training(max_steps, train_dataloader, resume_from_checkpoint)
        model, train_dataloader = super()._prepare_for_training(max_steps, train_dataloader, None)
        with weights_only_loads():
            load_path, _ = self.model_wrapped.load_checkpoint(
                resume_from_checkpoint, load_module_strict=False, load_optimizer_states=True,
                load_lr_scheduler_states=True)
        if load_path is None:
            raise RuntimeError(f"DeepSpeed could not resume from {resume_from_checkpoint}")
        self._load_optimizer_and_scheduler(resume_from_checkpoint)
        if self.method == "structlora":
            restore_graph(self.accelerator.unwrap_model(self.model), Path(resume_from_checkpoint) / GRAPH_FILE)
        logger.info("resumed DeepSpeed state from %s", load_path)
        return model, train_dataloader

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """Stock checkpoint, then (after every rank wrote its shard) a COMPLETE marker, then rotation.

        A kill -9 mid-save leaves a directory without the marker, which RESUME=auto ignores; older
        complete checkpoints are deleted only once a newer one is complete.
        """
        limit, self.args.save_total_limit = self.args.save_total_limit, None
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        ckpt = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        if self.args.should_save:
            mark_complete(ckpt, step=self.state.global_step, world_size=self.args.world_size)
            rotate_complete(self.args.output_dir, keep=limit)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
