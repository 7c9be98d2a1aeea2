"""Evaluation options: one dataclass (`EvalConfig`) whose fields generate the command line of
`python -m llava_structlora.evaluation` and of the eval/*.sh recipes (`add_eval_arguments`), as the
training options generate theirs. Task layout and scoring: tasks.py (one spec object per task).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from llava_structlora.data.conversation import CONV_TEMPLATES, DEFAULT_CONV_TEMPLATE, conv_system
from llava_structlora.modeling import check_attn_implementation, resolve_dtype
from llava_structlora.rundir import RunDir

from .tasks import PROTOCOLS, TASKS, TaskSpec, get_task

__all__ = ["TASKS", "TaskSpec", "EvalConfig", "add_eval_arguments", "recorded_conv_template"]


def recorded_conv_template(adapter: str | None, model: str) -> str | None:
    """The conversation format a run trained with, found beside what is evaluated.

    Looked up in the run.json of the adapter (its dir or the run dir above it; a release folder has
    one) and in a merged model's merge_info.json; None when nothing records it.
    """
    for cand in ([Path(adapter), Path(adapter).parent] if adapter else []) + [Path(model)]:
        if RunDir(cand).run_json.is_file():
            return RunDir(cand).conv_template()
        info = cand / "merge_info.json"
        if info.is_file():
            name = json.loads(info.read_text()).get("conv_template")
            if name:
                return name
    return None


def _opt(default: Any, help: str, **cli: Any) -> Any:
    """A field with its CLI help (and argparse extras such as choices)."""
    return field(default=default, metadata={"help": help, **cli})


def _req(help: str) -> Any:
    return field(metadata={"help": help})


@dataclass
class EvalConfig:
    """One evaluation run: generate -> merge -> convert -> score (or write the submission)."""

    task: str = field(metadata={"help": "The task (its scorer and files).", "choices": sorted(TASKS)})
    model: str = _req("Base model dir (save_pretrained), or a merged model.")
    data_root: str = _req("DATA_ROOT: <task>/<split>_questions.jsonl and the scorer's files.")
    output_dir: str = _req("Where answers, results and metrics.json go.")
    split: str | None = _opt(None, "Default: vqav2 val, gqa testdev, coco test (Karpathy).")
    adapter: str | None = _opt(None, "PEFT adapter dir, StructLoRA dir, merged model or run dir.")
    batch_size: int = _opt(32, "Generation batch size.")
    num_gpus: int = _opt(1, "Processes: one per GPU, or CPU workers without GPUs.")
    protocol: str = _opt("official", "Answer processing of the scorer.", choices=PROTOCOLS)
    max_new_tokens: int | None = _opt(None, "Default: the task's.")
    dtype: str = _opt("float32", "Base load dtype: fp32 | bf16 | fp16 (long names too); bf16 for 7B on GPUs.")
    attn_implementation: str | None = _opt(None, "sdpa | eager | flash_attention_2 (default: transformers').")
    device: str = _opt("auto", "auto (cuda if available) | cpu | cuda.")
    model_id: str | None = _opt(None, "model_id written in the answers (default: adapter dir name).")
    conv_template: str | None = _opt(
        None,
        "Conversation format; must match training. Default: the one the adapter's run.json (or a merged "
        "model's merge_info.json) records, else vicuna_v1_nosys (the toy base).",
        choices=sorted(CONV_TEMPLATES),
    )
    limit: int | None = _opt(None, "Evaluate only the first N questions of the split (file order; scored on those N).")
    overwrite: bool = _opt(False, "Discard answers of a different earlier run in output_dir.")
    meteor: bool = _opt(True, "coco: score METEOR too (about 16 s of Java; --no-meteor writes null + a note).")
    clip_weights: str | None = _opt(None, "coco: local open_clip checkpoint -> CLIPScore (else skipped, noted).")
    clip_model: str = _opt("ViT-B-32", "open_clip model name of clip_weights.")

    def __post_init__(self) -> None:
        spec = get_task(self.task)  # ValueError listing the tasks
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be 'official' or 'llava', got {self.protocol!r}")
        if self.conv_template is None:
            self.conv_template = recorded_conv_template(self.adapter, self.model) or DEFAULT_CONV_TEMPLATE
        conv_system(self.conv_template)  # unknown names: ValueError listing the known ones
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 (questions), got {self.limit}")
        resolve_dtype(self.dtype)  # a typo fails here (ModelLoadError, a ValueError), not in every worker
        check_attn_implementation(self.attn_implementation)
        if self.batch_size < 1 or self.num_gpus < 1:
            raise ValueError("batch_size and num_gpus must be >= 1")
        self.split = self.split or spec.default_split
        self.max_new_tokens = self.max_new_tokens or spec.max_new_tokens
        if self.model_id is None:
            self.model_id = Path(self.adapter or self.model).resolve().name
        self._resolve_device()

    def _resolve_device(self) -> None:
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda" and self.num_gpus > torch.cuda.device_count():
            raise ValueError(f"num_gpus={self.num_gpus} but only {torch.cuda.device_count()} GPUs are visible")

    @property
    def system(self) -> str:
        """The system prompt of the conversation format (must be the one the adapter was trained with)."""
        return conv_system(self.conv_template)

    @property
    def spec(self) -> TaskSpec:
        return TASKS[self.task]

    def generation_key(self) -> dict:
        """What must match for answers already in output_dir to be reused."""
        d = asdict(self)
        return {
            k: d[k]
            for k in ("task", "split", "model", "adapter", "max_new_tokens", "dtype", "model_id", "conv_template")
        }


def _flags(name: str) -> list[str]:
    """`--batch-size` and `--batch_size` (dash style first, as the CLI always had; underscores as training's)."""
    return [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])


def add_eval_arguments(parser: argparse.ArgumentParser, required: bool = True, skip: tuple[str, ...] = ()) -> None:
    """One option per EvalConfig field (type, default, help, choices from the field).

    Args:
        required: False gives every option the default argparse.SUPPRESS, so that the namespace holds only
            what the user typed (a recipe fills in the rest and lets set environment variables win).
        skip: fields the caller sets itself (e.g. `task`).
    """
    hints = typing.get_type_hints(EvalConfig)
    for f in dataclasses.fields(EvalConfig):
        if f.name in skip:
            continue
        kw: dict[str, Any] = {"help": f.metadata["help"], "dest": f.name}
        if "choices" in f.metadata:
            kw["choices"] = list(f.metadata["choices"])
        has_default = f.default is not dataclasses.MISSING
        if hints[f.name] is bool:  # `--overwrite`, `--no-meteor`: the CLI's spelling for switches
            flags = _flags(f.name) if not f.default else [f"--no-{f.name.replace('_', '-')}"]
            kw["action"] = "store_false" if f.default else "store_true"
            kw.pop("choices", None)
        else:
            flags = _flags(f.name)
            inner = [a for a in typing.get_args(hints[f.name]) if a is not type(None)] or [hints[f.name]]
            kw["type"] = inner[0]
            kw["required"] = required and not has_default
            if required and has_default and f.default is not None:
                kw["help"] += f" [{f.default}]"
        kw["default"] = f.default if (required and has_default) else argparse.SUPPRESS
        parser.add_argument(*flags, **kw)
