"""End-of-run deliverables in the run directory (rank 0; layout: llava_structlora.rundir.RunDir):
the exported adapter (or full model), StructLoRA state, run.json, plots; and the one validation
after training (run_validation -> metrics.json / metrics_base.json)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import torch.distributed as dist

from llava_structlora.evaluation import EvalConfig, evaluate
from llava_structlora.rundir import RunDir
from llava_structlora.utils.io import atomic_write_json, read_optional_json

from .identity import to_jsonable
from .options import MIX_TASK, TrainConfig, validation_tasks
from .specs import get_spec
from .zero3 import check_whole, engine_is_zero3

logger = logging.getLogger(__name__)


def git_commit(where: Path) -> dict[str, Any]:
    """HEAD commit of the git checkout containing `where`, and whether it has local changes (None outside one)."""

    def _git(*args: str) -> Optional[str]:
        try:
            return subprocess.run(
                ["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": _git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def export_adapter(trainer, method: str, out_dir: Path) -> Path:
    """Write the run's deliverable atomically through the method's spec; returns its dir."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if trainer.is_deepspeed_enabled and engine_is_zero3(trainer.model_wrapped):
        check_whole(model, "at export")  # an export must never write empty ZeRO-3 partitions
    return get_spec(method).export(model, RunDir(out_dir))


def write_outputs(
    trainer, cfg: TrainConfig, result, times: dict[str, float], resumed_from: Optional[str]
) -> Optional[Path]:
    """Rank 0 writes the deliverables; every rank waits so that none exits before they exist."""
    margs, dargs, sargs, targs = cfg.args
    out_dir = Path(targs.output_dir)
    run_dir = RunDir(out_dir)
    if trainer.args.should_save:
        adapter_dir = export_adapter(trainer, margs.method, out_dir)
        extras = get_spec(margs.method).finish(trainer, run_dir, plots=targs.plots)  # e.g. StructLoRA's plots
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        run = {
            "base_model": str(Path(margs.model_name_or_path).resolve()),
            "method": margs.method,
            "conv_template": dargs.conv_template,
            "adapter": str(adapter_dir),
            "structlora": extras.get("structlora"),
            "config": to_jsonable(margs, dargs, sargs) | {"TrainingArguments": _training_summary(targs)},
            "git": git_commit(Path(__file__).parent),  # the checkout the code runs from
            "seed": targs.seed,
            "data_seed": targs.data_seed,
            "world_size": targs.world_size,
            "deepspeed": targs.deepspeed,
            "resumed_from": resumed_from,
            "global_step": trainer.state.global_step,
            "final_loss": losses[-1] if losses else None,
            "train_runtime_s": result.metrics.get("train_runtime"),
            "data_mix": getattr(trainer.train_dataset, "composition", None),
            "times": times,
        }
        atomic_write_json(run_dir.run_json, run)
        logger.info("adapter written to %s", adapter_dir)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    return out_dir if trainer.args.should_save else None


def _training_summary(targs) -> dict[str, Any]:
    keys = (
        "output_dir",
        "learning_rate",
        "weight_decay",
        "adam_beta1",
        "adam_beta2",
        "adam_epsilon",
        "warmup_steps",
        "lr_scheduler_type",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "num_train_epochs",
        "max_steps",
        "seed",
        "bf16",
        "fp16",
        "deepspeed",
        "save_steps",
        "logging_steps",
    )
    return {k: getattr(getattr(targs, k), "value", getattr(targs, k)) for k in keys}


def run_validation(
    run: RunDir,
    task: str,
    base: str | Path,
    data_root: str | Path,
    split: str,
    batch_size: int,
    which: str = "adapter",
    work_dir: Optional[Path] = None,
    reuse: bool = False,
    conv_template: Optional[str] = None,
) -> dict[str, Any]:
    """The one validation after training: the run's adapter (or the base) on `split`, scored by the
    evaluation package; writes `run.metrics(which)` (metrics.json / metrics_base.json). A `mix` run is
    validated on every task: the record holds `tasks: {coco: ..., vqav2: ..., gqa: ...}`.

    Args:
        run: the training run (its deliverable is evaluated when which="adapter").
        which: "adapter" or "base".
        work_dir: where the answers go (default: run.eval_dir(which)); a base cache shared across runs.
        reuse: take `work_dir/metrics.json` when it exists (the base's answers depend on the base only).
        conv_template: prompt format, for the base too (default: the one the run's run.json records).
    """
    if not data_root:
        raise ValueError("validation needs data_root (DATA_ROOT with the task's eval files)")
    adapter = None if which == "base" else run.deliverable()
    conv_template = conv_template or run.conv_template()
    root = Path(work_dir) if work_dir is not None else run.eval_dir(which)
    per_task: dict[str, dict[str, Any]] = {}
    for t in validation_tasks(task):  # a mix run: each task in its own work dir, with its own scorer
        work = root / t if task == MIX_TASK else root
        cached = read_optional_json(work / "metrics.json") if reuse else {}
        if cached:
            per_task[t] = cached
            continue
        cfg = EvalConfig(
            task=t,
            model=str(base),
            data_root=str(data_root),
            output_dir=str(work),
            split=split,
            adapter=str(adapter) if adapter else None,
            batch_size=batch_size,
            conv_template=conv_template,
            overwrite=True,
        )
        per_task[t] = evaluate(cfg)
    metrics = per_task[task] if task != MIX_TASK else {"tasks": per_task}
    atomic_write_json(
        run.metrics(which),
        {"which": which, "task": task, "split": split, "adapter": str(adapter) if adapter else None, **metrics},
    )
    return metrics


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use python -m llava_structlora.train")
