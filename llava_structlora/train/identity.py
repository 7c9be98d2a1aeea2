"""What a run is, as recorded: its JSON view (run.json) and its identity (checked on resume)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from llava_structlora.data.conversation import DEFAULT_CONV_TEMPLATE

from .options import DataArguments, ModelArguments, StructLoRAArguments, TrainingArguments


def to_jsonable(*objs: Any) -> dict[str, Any]:
    """Flat JSON view of the argument dataclasses (for run.json)."""
    out: dict[str, Any] = {}
    for obj in objs:
        d = obj.to_dict() if hasattr(obj, "to_dict") else dataclasses.asdict(obj)
        out[type(obj).__name__] = json.loads(json.dumps(d, default=str))
    return out


# What a resumed run must share with the run that wrote the checkpoint (schedule length, logging and
# evaluation knobs may change). Everything of ModelArguments and StructLoRAArguments counts.
_IDENTITY_DATA = ("data_path", "image_folder", "model_max_length", "data_fraction", "max_train_samples", "task")
_IDENTITY_TRAINING = ("seed", "per_device_train_batch_size", "gradient_accumulation_steps", "weight_decay")


def run_identity(
    margs: ModelArguments, dargs: DataArguments, sargs: StructLoRAArguments, targs: TrainingArguments
) -> dict[str, Any]:
    """The knobs that define what a run trains (flat option -> value; paths resolved)."""
    ident: dict[str, Any] = dict(dataclasses.asdict(margs))
    ident.update(dataclasses.asdict(sargs))
    ident.update({k: getattr(dargs, k) for k in _IDENTITY_DATA})
    ident.update({k: getattr(targs, k) for k in _IDENTITY_TRAINING})
    # added knobs join only when not at their default, so identities recorded before them still match
    ident.update({k: getattr(dargs, k) for k in ("data_ratios", "mix_size") if getattr(dargs, k) is not None})
    if dargs.conv_template != DEFAULT_CONV_TEMPLATE:
        ident["conv_template"] = dargs.conv_template
    for key in ("model_name_or_path", "image_folder"):
        if ident.get(key):
            ident[key] = str(Path(ident[key]).resolve())
    if ident.get("data_path"):  # one source or a comma-separated mix
        ident["data_path"] = ",".join(str(Path(p.strip()).resolve()) for p in ident["data_path"].split(","))
    return json.loads(json.dumps(ident, default=str))
