"""What a run is, as recorded: its JSON view (run.json) and its identity (checked on resume)."""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import Any

from .options import DataArguments, ModelArguments, StructLoRAArguments, TrainingArguments


def to_jsonable(*objs: Any) -> dict[str, Any]:
    """Flat JSON view of the argument dataclasses (for run.json)."""
    out: dict[str, Any] = {}
    for obj in objs:
        d = obj.to_dict() if hasattr(obj, "to_dict") else dataclasses.asdict(obj)
        out[type(obj).__name__] = json.loads(json.dumps(d, default=str))
    return out


# Options that do not change the trained weights (logging, saving, evaluation, hub, dataloader performance,
# device plumbing): everything else of the four argument dataclasses is part of a run's identity.
# tests/train/test_identity.py checks that every field is classified (a new field counts by default).
NOT_WEIGHTS: dict[str, frozenset[str]] = {
    "ModelArguments": frozenset(),
    "StructLoRAArguments": frozenset({"open_threshold"}),  # diagnostics only
    "DataArguments": frozenset({"data_root", "eval_split", "eval_batch_size"}),  # the validation run
    "TrainingArguments": frozenset(
        {
            "output_dir", "resume", "resume_from_checkpoint", "run_eval", "plots", "diagnostics_steps",
            "logging_strategy", "logging_steps", "logging_first_step", "log_on_each_node", "logging_nan_inf_filter",
            "include_num_input_tokens_seen", "log_level", "log_level_replica", "disable_tqdm", "report_to",
            "run_name", "project", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id",
            "eval_strategy", "eval_steps", "eval_delay", "per_device_eval_batch_size", "prediction_loss_only",
            "eval_on_start", "eval_do_concat_batches", "eval_use_gather_object", "eval_accumulation_steps",
            "include_for_metrics", "batch_eval_metrics", "do_train", "do_eval", "do_predict",
            "save_only_model", "save_strategy", "save_steps", "save_on_each_node", "save_total_limit",
            "enable_jit_checkpoint", "restore_callback_states_from_checkpoint", "push_to_hub", "hub_token",
            "hub_private_repo", "hub_model_id", "hub_strategy", "hub_always_push", "hub_revision",
            # the device and process plumbing the launcher and the ranks fill in differently
            "use_cpu", "local_rank", "accelerator_config", "parallelism_config", "ddp_find_unused_parameters",
            "ddp_bucket_cap_mb", "ddp_broadcast_buffers", "ddp_static_graph", "ddp_backend", "ddp_timeout",
            "dataloader_num_workers", "dataloader_pin_memory", "dataloader_persistent_workers",
            "dataloader_prefetch_factor", "dataloader_multiprocessing_context", "torch_empty_cache_steps",
            "use_cache", "debug", "skip_memory_metrics",
        }
    ),
}  # fmt: skip
IDENTITY_VERSION = 2  # 1: the subset recorded before every weight-changing option counted (no version key)
PATHS = ("model_name_or_path", "image_folder", "deepspeed")


def _plain(value: Any) -> Any:
    """JSON-comparable: enums by value, tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def weight_options(
    margs: ModelArguments, dargs: DataArguments, sargs: StructLoRAArguments, targs: TrainingArguments
) -> dict[str, Any]:
    """Every option that changes the trained weights (flat option -> value; paths resolved)."""
    ident: dict[str, Any] = {}
    for obj in (margs, dargs, sargs, targs):
        skip = NOT_WEIGHTS[type(obj).__name__]
        ident.update(
            {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init and f.name not in skip}
        )
    for key in PATHS:
        if isinstance(ident.get(key), str) and ident[key]:
            ident[key] = str(Path(ident[key]).resolve())
    if ident.get("data_path"):  # one source or a comma-separated mix
        ident["data_path"] = ",".join(str(Path(p.strip()).resolve()) for p in ident["data_path"].split(","))
    return json.loads(json.dumps(ident, default=str))


def run_identity(
    margs: ModelArguments, dargs: DataArguments, sargs: StructLoRAArguments, targs: TrainingArguments
) -> dict[str, Any]:
    """What a resumed (or rerun) run must share with the run that wrote the directory: every weight option."""
    return {**weight_options(margs, dargs, sargs, targs), "identity_version": IDENTITY_VERSION}
