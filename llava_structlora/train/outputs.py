"""End-of-run deliverables in the run directory (rank 0; layout: llava_structlora.rundir.RunDir):
the exported adapter (or full model), StructLoRA state, run.json, plots; and the one validation
after training (run_validation -> metrics.json / metrics_base.json)."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import torch.distributed as dist

from llava_structlora.rundir import RunDir
from llava_structlora.utils.io import (atomic_directory, atomic_save_safetensors, atomic_write_json,
                                       read_optional_json)

from .config import to_jsonable

logger = logging.getLogger(__name__)


def git_commit(where: Path) -> dict[str, Any]:
    """HEAD commit of the git checkout containing `where`, and whether it has local changes (None outside one)."""
    def _git(*args: str) -> Optional[str]:
        try:
            return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": _git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def _trained_projector(model) -> dict:
    return {n: p.detach() for n, p in model.named_parameters()
            if p.requires_grad and ".multi_modal_projector." in f".{n}"}


def add_projector_to_adapter(model, adapter_dir: Path) -> None:
    """A tuned projector joins the exported adapter as PEFT `modules_to_save` (stock PEFT loads it)."""
    projector = _trained_projector(model)
    if not projector:
        return
    from safetensors.torch import load_file

    weights = adapter_dir / "adapter_model.safetensors"
    tensors = dict(load_file(str(weights)))
    tensors.update({f"base_model.model.{n}": t for n, t in projector.items()})
    atomic_save_safetensors(tensors, weights, metadata={"format": "pt"})
    cfg_path = adapter_dir / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["modules_to_save"] = sorted(set(cfg.get("modules_to_save") or []) | {"multi_modal_projector"})
    atomic_write_json(cfg_path, cfg)


def export_adapter(trainer, method: str, out_dir: Path) -> Path:
    """Write adapter/ (and structlora/) atomically; returns the adapter dir."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    run = RunDir(out_dir)
    adapter_dir = run.export_dir(full_model=method == "full")
    if method == "structlora":
        from llava_structlora.structlora import export_peft_adapter, save_structlora

        with atomic_directory(adapter_dir) as tmp:
            export_peft_adapter(model, tmp)
            add_projector_to_adapter(model, tmp)
        with atomic_directory(run.structlora) as tmp:
            save_structlora(model, tmp)
            projector = _trained_projector(model)
            if projector:
                atomic_save_safetensors(projector, tmp / "mm_projector.safetensors")
    else:
        with atomic_directory(adapter_dir) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
    return adapter_dir


def write_outputs(trainer, processor, args: tuple, result, times: dict[str, float],
                  resumed_from: Optional[str]) -> Optional[Path]:
    """Rank 0 writes the deliverables; every rank waits so that none exits before they exist."""
    margs, dargs, sargs, targs = args
    out_dir = Path(targs.output_dir)
    run_dir = RunDir(out_dir)
    if trainer.args.should_save:
        adapter_dir = export_adapter(trainer, margs.method, out_dir)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        run = {
            "base_model": str(Path(margs.model_name_or_path).resolve()),
            "method": margs.method, "adapter": str(adapter_dir),
            "structlora": str(run_dir.structlora) if margs.method == "structlora" else None,
            "config": to_jsonable(margs, dargs, sargs) | {"TrainingArguments": _training_summary(targs)},
            "git": git_commit(Path(__file__).parent),  # the checkout the code runs from
            "seed": targs.seed, "data_seed": targs.data_seed, "world_size": targs.world_size,
            "deepspeed": targs.deepspeed, "resumed_from": resumed_from,
            "global_step": trainer.state.global_step, "final_loss": losses[-1] if losses else None,
            "train_runtime_s": result.metrics.get("train_runtime"),
            "times": times,
        }
        atomic_write_json(run_dir.run_json, run)
        if targs.plots and margs.method == "structlora":
            from llava_structlora.structlora import structlora_diagnostics

            from .plots import write_plots

            final = structlora_diagnostics(trainer.accelerator.unwrap_model(trainer.model), with_cosine_matrix=True)
            write_plots(run_dir.diagnostics, final, run_dir.plots)
        logger.info("adapter written to %s", adapter_dir)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    return out_dir if trainer.args.should_save else None


def _training_summary(targs) -> dict[str, Any]:
    keys = ("output_dir", "learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon",
            "warmup_steps", "lr_scheduler_type", "per_device_train_batch_size", "gradient_accumulation_steps",
            "num_train_epochs", "max_steps", "seed", "bf16", "fp16", "deepspeed", "save_steps", "logging_steps")
    return {k: getattr(getattr(targs, k), "value", getattr(targs, k)) for k in keys}


def run_validation(run: RunDir, task: str, base: str | Path, data_root: str | Path, split: str,
                   batch_size: int, which: str = "adapter", work_dir: Optional[Path] = None,
                   reuse: bool = False) -> dict[str, Any]:
    """The one validation after training: the run's adapter (or the base) on `split`, scored by the
    evaluation package; writes `run.metrics(which)` (metrics.json / metrics_base.json).

    Args:
        run: the training run (its deliverable is evaluated when which="adapter").
        which: "adapter" or "base".
        work_dir: where the answers go (default: run.eval_dir(which)); a base cache shared across runs.
        reuse: take `work_dir/metrics.json` when it exists (the base's answers depend on the base only).
    """
    from llava_structlora.evaluation import EvalConfig, evaluate

    if not data_root:
        raise ValueError("validation needs data_root (DATA_ROOT with the task's eval files)")
    adapter = None if which == "base" else run.deliverable()
    work = Path(work_dir) if work_dir is not None else run.eval_dir(which)
    cached = read_optional_json(work / "metrics.json") if reuse else {}
    if cached:
        metrics = cached
    else:
        cfg = EvalConfig(task=task, model=str(base), data_root=str(data_root), output_dir=str(work), split=split,
                         adapter=str(adapter) if adapter else None, batch_size=batch_size, overwrite=True)
        metrics = evaluate(cfg)
    atomic_write_json(run.metrics(which), {"which": which, "task": task, "split": split,
                                           "adapter": str(adapter) if adapter else None, **metrics})
    return metrics


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use python -m llava_structlora.train")
