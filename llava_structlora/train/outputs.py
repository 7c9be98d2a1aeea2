"""End-of-run deliverables in $OUTPUT_DIR (rank 0):

  adapter/      stock PEFT adapter (StructLoRA: export_peft_adapter; baselines: PEFT save_pretrained;
                full: the whole fine-tuned model, save_pretrained)
  structlora/   full StructLoRA state for further training (save_structlora)
  run.json      base model path, arguments, git commit, seeds, times, final loss
  moved.json    StructLoRA: eval-gate histograms at init/end, open directions and update norms per layer
  plots/        gate map per layer, CosAdj heatmap across layers, drift energy over steps (PNG)
  metrics.json  quick validation run (run_validation; skipped with EVAL=0)
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import torch.distributed as dist

from llava_structlora.utils.io import atomic_directory, atomic_save_safetensors, atomic_write_json

from .config import to_jsonable

logger = logging.getLogger(__name__)


def git_commit(repo: Path) -> dict[str, Any]:
    """HEAD commit and whether the tree has local changes (None outside a git checkout)."""
    def _git(*args: str) -> Optional[str]:
        try:
            return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
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
    adapter_dir = out_dir / ("model" if method == "full" else "adapter")
    if method == "structlora":
        from llava_structlora.structlora import export_peft_adapter, save_structlora

        with atomic_directory(adapter_dir) as tmp:
            export_peft_adapter(model, tmp)
            add_projector_to_adapter(model, tmp)
        with atomic_directory(out_dir / "structlora") as tmp:
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
    if trainer.args.should_save:
        adapter_dir = export_adapter(trainer, margs.method, out_dir)
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        run = {
            "base_model": str(Path(margs.model_name_or_path).resolve()),
            "method": margs.method, "adapter": str(adapter_dir),
            "structlora": str(out_dir / "structlora") if margs.method == "structlora" else None,
            "config": to_jsonable(margs, dargs, sargs) | {"TrainingArguments": _training_summary(targs)},
            "git": git_commit(Path(__file__).resolve().parents[2]),
            "seed": targs.seed, "data_seed": targs.data_seed, "world_size": targs.world_size,
            "deepspeed": targs.deepspeed, "resumed_from": resumed_from,
            "global_step": trainer.state.global_step, "final_loss": losses[-1] if losses else None,
            "train_runtime_s": result.metrics.get("train_runtime"),
            "times": times,
        }
        atomic_write_json(out_dir / "run.json", run)
        moved = None
        if margs.method == "structlora":   # what training moved (issue 11): gates, open directions, norms
            from llava_structlora.structlora import structlora_moved

            moved = structlora_moved(trainer.accelerator.unwrap_model(trainer.model))
            atomic_write_json(out_dir / "moved.json", moved)
        if targs.plots and margs.method == "structlora":
            from llava_structlora.structlora import structlora_diagnostics

            from .plots import write_plots

            final = structlora_diagnostics(trainer.accelerator.unwrap_model(trainer.model), with_cosine_matrix=True)
            write_plots(out_dir / "diagnostics.jsonl", final, out_dir / "plots", moved=moved)
        logger.info("adapter written to %s", adapter_dir)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    return out_dir if trainer.args.should_save else None


def _training_summary(targs) -> dict[str, Any]:
    keys = ("output_dir", "learning_rate", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon",
            "warmup_steps", "lr_scheduler_type", "per_device_train_batch_size", "gradient_accumulation_steps",
            "num_train_epochs", "max_steps", "seed", "bf16", "fp16", "deepspeed", "save_steps", "logging_steps")
    return {k: getattr(getattr(targs, k), "value", getattr(targs, k)) for k in keys}


def run_validation(dargs, base: str, out_dir: Path, which: str = "adapter") -> dict[str, Any]:
    """Quick validation through the evaluation package; writes metrics.json (or metrics_base.json)."""
    from llava_structlora.evaluation import EvalConfig, evaluate

    if not dargs.data_root:
        raise ValueError("validation needs data_root (DATA_ROOT with the task's eval files)")
    adapter = None if which == "base" else _adapter_for_eval(out_dir)
    cfg = EvalConfig(task=dargs.task, model=str(base), data_root=str(dargs.data_root),
                     output_dir=str(out_dir / f"eval_{which}"), split=dargs.eval_split,
                     adapter=str(adapter) if adapter else None, batch_size=dargs.eval_batch_size,
                     overwrite=True)
    metrics = evaluate(cfg)
    name = "metrics.json" if which == "adapter" else "metrics_base.json"
    atomic_write_json(out_dir / name, {"which": which, "task": dargs.task, "split": dargs.eval_split,
                                       "adapter": str(adapter) if adapter else None, **metrics})
    return metrics


def _adapter_for_eval(out_dir: Path) -> Path:
    for name in ("adapter", "model"):
        if (out_dir / name).is_dir():
            return out_dir / name
    raise FileNotFoundError(f"{out_dir}: no adapter/ or model/ to validate")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use python -m llava_structlora.train")
