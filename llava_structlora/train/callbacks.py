"""Trainer callbacks: StructLoRA diagnostics every N steps (logged to TensorBoard/W&B through the
Trainer's own logger, and appended to diagnostics.jsonl for the end-of-run plots)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import transformers

from llava_structlora.structlora import structlora_diagnostics


def _scalar_summary(diag: dict[str, Any]) -> dict[str, float]:
    """Flatten diagnostics to loggable scalars (per-layer lists -> mean/min/max/sum)."""
    out: dict[str, float] = {}
    for key, value in diag.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().float().cpu().tolist()
        if isinstance(value, (int, float)) and math.isfinite(float(value)):
            out[f"structlora/{key}"] = float(value)
        elif isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            out[f"structlora/{key}_mean"] = float(sum(value) / len(value))
            out[f"structlora/{key}_min"] = float(min(value))
            out[f"structlora/{key}_max"] = float(max(value))
            if key.startswith("open"):
                out[f"structlora/{key}_total"] = float(sum(value))
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class DiagnosticsCallback(transformers.TrainerCallback):
    """Every `every` steps: structlora_diagnostics -> the Trainer's log (rank 0 writes the JSONL).

    Expects a Trainer with ``log_with_next_loss`` (StructLoRATrainer): a trainer.log() of its own from a step
    callback would make the Trainer's flow callback drop that step's loss (its on_log resets should_log)."""

    def __init__(self, trainer: transformers.Trainer, every: int, path: Path) -> None:
        self.trainer, self.every, self.path = trainer, every, Path(path)
        self._loss_logged_now = False

    def _record(self, step: int) -> None:
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        with torch.no_grad():
            diag = structlora_diagnostics(model)
        self.trainer.log_with_next_loss(_scalar_summary(diag), now=not self._loss_logged_now)
        if self.trainer.args.should_save:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:  # append-only log; a torn last line is skipped by readers
                f.write(json.dumps({"step": step, **_jsonable(diag)}) + "\n")

    def on_step_end(self, args, state, control, **kwargs):
        # The Trainer's own flow callback ran first and said whether this step logs its loss; the diagnostics
        # then join that line (one line per logging step) instead of taking its place.
        self._loss_logged_now = bool(control.should_log)
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self._record(state.global_step)
        return control


def read_diagnostics(path: Path) -> list[dict[str, Any]]:
    """Diagnostics records by step (last record wins on a resumed run), skipping a torn line."""
    by_step: dict[int, dict[str, Any]] = {}
    if not Path(path).is_file():
        return []
    for line in Path(path).read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        by_step[int(rec["step"])] = rec
    return [by_step[k] for k in sorted(by_step)]


class AdaLoraCallback(transformers.TrainerCallback):
    """PEFT AdaLoRA's rank allocation: after optimizer.step and before zero_grad (needs param.grad)."""

    def __init__(self, trainer: transformers.Trainer) -> None:
        self.trainer = trainer

    def on_optimizer_step(self, args, state, control, **kwargs):
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        # Adapters outside the forward graph get no grad: the last CLIP layer's q/v, since LLaVA reads
        # features from layer -2. PEFT's sensitivity update needs a tensor: zero importance is exact.
        for name, p in model.named_parameters():
            if p.requires_grad and p.grad is None and "lora_" in name:
                p.grad = torch.zeros_like(p)
        model.base_model.update_and_allocate(state.global_step)
        return control
