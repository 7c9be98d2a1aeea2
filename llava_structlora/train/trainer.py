"""The Trainer of every `--method`: what differs per method comes from its spec (specs.py); the public
overrides (optimizer groups, per-step hook, regularizer, NaN stop) are here, every private one is in
hf_overrides.py (with the transformers version they target).

Everything else (DeepSpeed ZeRO engine, AdamW, cosine schedule with warm-up, logging, RNG/optimizer/
scheduler checkpointing, data order on resume) is the stock Trainer.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

import torch
import torch.distributed as dist
import transformers
from torch import nn

from llava_structlora.structlora import StructLoRAConfig

from .checkpoints import newest_complete
from .hf_overrides import TrainerOverrides
from .specs import get_spec

logger = logging.getLogger(__name__)


class TrainingDivergedError(RuntimeError):
    """The loss became NaN/inf: training stops; the newest complete checkpoint is untouched."""


def _any_rank(flag: bool) -> bool:
    """True if `flag` is true on any rank (keeps all ranks stopping together, no hang)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def step_seed(seed: int, step: int, rank: int) -> int:
    return (int(seed) * 1_000_003 + int(step) * 7919 + int(rank) * 104_729) % (2**63 - 1)


class StructLoRATrainer(TrainerOverrides, transformers.Trainer):
    """Trainer for every `--method` (its spec's hooks: param groups, step hook, regularizer, checkpoints).

    Args:
        method: the `--method` name (specs.SPECS).
        adapter_config: the run's StructLoRAConfig (TrainConfig.adapter), handed to the spec's optimizer groups
            and regularizer; None: the model's own (direct use without the training entry point).
        mm_projector_lr: lr of the tuned projector's group (None: learning_rate).
        projector_params: parameter names of the tuned projector.
        inject_nan_step, step_sleep: test-only fault injection (main._debug_hooks).
    """

    def __init__(
        self,
        *args: Any,
        method: str = "structlora",
        adapter_config: Optional[StructLoRAConfig] = None,
        mm_projector_lr: Optional[float] = None,
        projector_params: Optional[set[str]] = None,
        inject_nan_step: Optional[int] = None,
        step_sleep: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.method, self.spec, self.adapter_config = method, get_spec(method), adapter_config
        self.mm_projector_lr = mm_projector_lr
        self.projector_params = projector_params or set()
        self.inject_nan_step = inject_nan_step
        self.step_sleep = step_sleep
        self._last_hook_step = -1
        self._pending_logs: dict[str, float] = {}

    # ------------------------------------------------------------------ logging
    def log_with_next_loss(self, logs: dict[str, float], now: bool) -> None:
        """Log `logs` with this step's loss line when the step logs its loss (`now` False), else on their own."""
        if now:
            self.log(logs)
        else:
            self._pending_logs.update(logs)

    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        """The Trainer's log, with values held for this step's loss line (log_with_next_loss) merged in."""
        if self._pending_logs and "loss" in logs:
            logs, self._pending_logs = {**logs, **self._pending_logs}, {}
        super().log(logs, start_time)

    # ------------------------------------------------------------------ optimizer
    def create_optimizer(self, model: Optional[nn.Module] = None):
        """AdamW with param groups: decay / no-decay, and the projector at `mm_projector_lr` (LLaVA)."""
        if self.optimizer is not None:
            return self.optimizer
        model = model if model is not None else self.model
        decay = set(self.get_decay_parameter_names(model))
        lr, wd = self.args.learning_rate, self.args.weight_decay
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        sl_groups, sl_names = self.spec.param_groups(model, lr, wd, self.adapter_config)  # e.g. gates at own lr
        for name, p in model.named_parameters():
            if not p.requires_grad or name in sl_names:
                continue
            proj = name in self.projector_params and self.mm_projector_lr is not None
            groups.setdefault((name in decay, proj), []).append(p)
        param_groups = [
            {"params": ps, "weight_decay": wd if is_decay else 0.0, **({"lr": self.mm_projector_lr} if is_proj else {})}
            for (is_decay, is_proj), ps in sorted(groups.items())
        ] + sl_groups
        cls, kwargs = transformers.Trainer.get_optimizer_cls_and_kwargs(self.args, model)
        self.optimizer = cls(param_groups, **kwargs)
        return self.optimizer

    # ------------------------------------------------------------------ loss
    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None) -> torch.Tensor:
        """Once per optimizer step, before its first forward: reseed, then the spec's step hook.

        Reseeding from (seed, step, rank) makes each step's randomness (gate noise, dropout) a function of
        the step alone, so a resumed run replays exactly what an uninterrupted one does, however the
        Trainer's RNG snapshot and batch prefetch interleave around a checkpoint.
        """
        step = self.state.global_step
        if step != self._last_hook_step:
            torch.manual_seed(step_seed(self.args.seed, step, self.args.process_index))
            self.spec.on_step(self.accelerator.unwrap_model(self.model), step, self.state.max_steps)
        if step != self._last_hook_step and self.step_sleep > 0:
            time.sleep(self.step_sleep)  # test hook (LLAVA_SL_DEBUG_STEP_SLEEP)
        self._last_hook_step = step
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch=None
    ):
        """Task loss (+ the spec's regularizer), with a NaN/inf stop agreed by all ranks."""
        out = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        loss, outputs = out if return_outputs else (out, None)
        reg = self.spec.regularizer(self.accelerator.unwrap_model(self.model), self.adapter_config)
        if reg is not None:
            loss = loss + reg.to(loss.dtype)
        if self.inject_nan_step is not None and self.state.global_step >= self.inject_nan_step:
            loss = loss * float("nan")  # fault injection for tests (--debug_nan_at_step)
        if _any_rank(not bool(torch.isfinite(loss.detach()).all())):
            self._diverged(float(loss.detach().float().mean()))
        return (loss, outputs) if return_outputs else loss

    def _diverged(self, value: float) -> None:
        last = newest_complete(self.args.output_dir)
        where = f"last good checkpoint kept: {last}" if last else "no checkpoint had been written yet"
        raise TrainingDivergedError(
            f"loss is {value} at step {self.state.global_step + 1} (method={self.method}); stopping. {where}. "
            "Lower learning_rate, check the data, or resume from that checkpoint with RESUME=auto."
        )
