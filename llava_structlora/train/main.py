"""`python -m llava_structlora.train [--config recipe.yaml] [--flag value ...]`.

Runs under the `deepspeed` launcher (ZeRO-2 by default, see zero_configs/), under torchrun, or as
one plain process. Each rank builds the same model (same seed) and dataset; the stock HF Trainer
drives DeepSpeed; rank 0 writes the deliverables at the end (see outputs.py).
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import torch

from llava_structlora.data import DataCollatorForSupervisedDataset
from llava_structlora.rundir import ResumeMismatchError, RunDir, check_resume_identity
from llava_structlora.utils.errors import note_output, run_main
from llava_structlora.utils.io import atomic_write_json
from llava_structlora.utils.outputs import claim_for_process, release_claims

from .checkpoints import resolve_resume
from .cli import parse_config
from .errors import ConfigError
from .identity import run_identity
from .methods import base_load_dtype, build_dataset, build_model, load_processor, projector_param_names
from .options import TrainConfig
from .outputs import run_validation, write_outputs
from .trainer import StructLoRATrainer

logger = logging.getLogger("llava_structlora.train")


def _cpu_deepspeed_setup() -> None:
    """On DeepSpeed's CPU accelerator, skip the JIT build of the shared-memory all-reduce op.

    It serves only DeepSpeed's inference all-reduce (ZeRO uses torch.distributed/gloo) and its first
    build costs ~90 s of C++ compilation; LLAVA_SL_DS_SHM_OP=1 keeps it.
    """
    if torch.cuda.is_available() or os.environ.get("LLAVA_SL_DS_SHM_OP") == "1":
        return
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:  # by module path: `import deepspeed.comm.torch as m` would bind the global torch package
        ds_torch_comm = importlib.import_module("deepspeed.comm.torch")
    except ImportError:
        return
    ds_torch_comm.build_shm_op = lambda: None


def _silence_known_deprecations() -> None:
    """DeepSpeed 0.19's ZeRO-2 calls torch.distributed.all_gather_into_tensor, which torch 2.14 deprecates with a
    FutureWarning on every call: twice a step, 996 of a default run's 1,064 log lines. Nothing a user can act
    on, so it is filtered here, by its exact message, once per process; every other warning still shows."""
    warnings.filterwarnings(
        "ignore", message=r"`torch\.distributed\.all_gather_into_tensor` is deprecated", category=FutureWarning
    )


def _with_cpu_flag(argv: list[str]) -> list[str]:
    if not torch.cuda.is_available() and "--use_cpu" not in argv:
        return argv + ["--use_cpu", "true"]
    return argv


def _total_steps(n_records: int, targs) -> int:
    """Optimizer steps of the run (AdaLoRA needs it before the Trainer computes it)."""
    if targs.max_steps and targs.max_steps > 0:
        return int(targs.max_steps)
    per_step = targs.per_device_train_batch_size * max(1, targs.world_size) * targs.gradient_accumulation_steps
    return int(math.ceil(n_records / per_step) * targs.num_train_epochs)


def _setup_logging(targs) -> None:
    level = logging.INFO if targs.process_index == 0 else logging.WARNING
    logging.basicConfig(
        level=level,
        format="[%(asctime)s rank%(rank)s] %(message)s".replace("%(rank)s", str(targs.process_index)),
        datefmt="%H:%M:%S",
        stream=sys.stdout,
        force=True,
    )


def run(argv: Sequence[str]) -> Optional[Path]:
    """Parse, build, train, export. Returns the output dir (rank 0) or None (other ranks)."""
    _cpu_deepspeed_setup()
    _silence_known_deprecations()
    cfg = parse_config(_with_cpu_flag(list(argv)))
    margs, dargs, targs = cfg.model, cfg.data, cfg.training
    _ = targs.device  # initializes torch.distributed first (ZeRO-3's zero.Init needs the world size)
    if targs.deepspeed:
        import deepspeed  # optional dependency: only runs under the DeepSpeed launcher need it

        deepspeed.init_distributed()  # deepspeed.comm too: zero.Init in from_pretrained reads its world size
    _setup_logging(targs)
    run_dir = RunDir(targs.output_dir)
    resume, complete = _checked_resume(cfg, run_dir)
    if complete:
        logger.info("%s", already_complete(run_dir))
        return run_dir.path if targs.should_save else None
    started = time.time()
    processor = load_processor(margs)
    dataset = build_dataset(dargs, processor, targs.seed)
    model = build_model(
        margs,
        cfg.structlora,
        targs.seed,
        _total_steps(len(dataset), targs),
        dtype=base_load_dtype(margs, targs),
        gradient_checkpointing=targs.activation_checkpointing,
        adapter=cfg.adapter,
    )
    trainer = StructLoRATrainer(
        model=model,
        args=targs,
        train_dataset=dataset,
        data_collator=DataCollatorForSupervisedDataset(pad_token_id=processor.tokenizer.pad_token_id),
        method=margs.method,
        adapter_config=cfg.adapter,
        mm_projector_lr=margs.mm_projector_lr if margs.tune_mm_projector else None,
        projector_params=projector_param_names(model) if margs.tune_mm_projector else set(),
        **_debug_hooks(),
    )
    for callback in cfg.spec.callbacks(trainer, run_dir):
        trainer.add_callback(callback)
    if resume:
        logger.info("resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=resume)
    if trainer.state.global_step == 0:  # never export an untrained adapter as a run's result
        raise ConfigError(
            f"{run_dir.path}: training ran 0 optimizer steps ({len(dataset)} records, max_steps={targs.max_steps}, "
            f"num_train_epochs={targs.num_train_epochs}); nothing was exported"
        )
    out = write_outputs(trainer, cfg, result, times={"start": started, "end": time.time()}, resumed_from=resume)
    if targs.run_eval and dargs.task and trainer.args.should_save:
        run_validation(
            run_dir, dargs.task, margs.model_name_or_path, dargs.data_root, dargs.eval_split, dargs.eval_batch_size
        )
    release_claims()  # the run dir's lock (taken in _checked_resume) ends with the run (in-process callers too)
    return out


def _checked_resume(cfg: TrainConfig, run: RunDir) -> tuple[Optional[str], bool]:
    """(the checkpoint to resume from or None, whether the run is already complete), checked before any build.

    A checkpoint's pickles are verified (resolve_resume -> safe_resume); resuming, or finding the run complete
    under RESUME=auto, requires the recorded identity to be this config's. A run that will train records this
    config as its identity and drops the records of the weights it replaces (run.json, metrics.json), so that
    an interrupted retrain never looks complete.
    """
    note_output(run.path, "training run")  # a disk-full error on any rank names it
    if cfg.training.process_index == 0:  # the other ranks share it (a launcher passes its lock down: utils.locks)
        claim_for_process(run.path, "training run")
    identity = run_identity(*cfg.args)
    resume = resolve_resume(cfg.training.resume, run.path)
    complete = cfg.training.resume == "auto" and run.is_complete()
    if resume or complete:
        try:
            check_resume_identity(run, identity)
        except ResumeMismatchError as e:
            raise ConfigError(str(e)) from e
    if not complete and cfg.training.process_index == 0:
        atomic_write_json(run.identity_json, identity)
        run.discard_results()
    return resume, complete


def already_complete(run: RunDir) -> str:
    """The message of a rerun of a finished run (0 steps are trained)."""
    step = run.read_run().get("global_step")
    return (
        f"{run.path} is already complete (global_step {step}, same configuration): 0 steps to train. "
        "RESUME=none (--resume none) trains it again from scratch."
    )


def _debug_hooks() -> dict:
    """Test-only fault injection (tests/scripts): LLAVA_SL_DEBUG_NAN_AT_STEP=N makes the loss NaN from
    step N on; LLAVA_SL_DEBUG_STEP_SLEEP=S sleeps S seconds per step so a test can kill -9 mid-run."""
    nan, sleep = os.environ.get("LLAVA_SL_DEBUG_NAN_AT_STEP"), os.environ.get("LLAVA_SL_DEBUG_STEP_SLEEP")
    return {"inject_nan_step": int(nan) if nan else None, "step_sleep": float(sleep) if sleep else 0.0}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; user errors (ConfigError, bad data, unsafe checkpoint...) -> message + exit 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = [a for a in argv if not a.startswith("--local_rank")]  # deepspeed launcher adds it; env has it
    try:
        return run_main(run, argv, "train")
    finally:
        release_claims()  # also after a failed run
