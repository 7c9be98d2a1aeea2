"""Evaluation stage config and the per-task file layout under DATA_ROOT (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's questions and scorer references live, and how long its answers are."""

    name: str
    default_split: str
    max_new_tokens: int
    reference_files: tuple[str, ...]  # patterns with {split}; all must exist to score

    def questions_jsonl(self, data_root: Path, split: str) -> Path:
        return data_root / self.name / f"{split}_questions.jsonl"

    def references(self, data_root: Path, split: str) -> list[Path]:
        return [data_root / self.name / p.format(split=split) for p in self.reference_files]


TASKS: dict[str, TaskSpec] = {
    # LLaVA-1.5 prompts answer VQA/GQA with "a single word or phrase": a few tokens suffice.
    "vqav2": TaskSpec("vqav2", "val", 16, ("{split}_questions.json", "{split}_annotations.json")),
    "gqa": TaskSpec("gqa", "testdev", 16, ("{split}_questions.json",)),
    "coco": TaskSpec("coco", "test", 48, ("{split}_annotations.json",)),
}


def recorded_conv_template(adapter: str | None, model: str) -> str | None:
    """The conversation format a run trained with, found beside what is evaluated.

    Looked up in the run.json of the adapter (its dir or the run dir above it; a release folder has
    one) and in a merged model's merge_info.json; None when nothing records it.
    """
    from llava_structlora.merge import recorded_conv_template as of_run

    for cand in ([Path(adapter), Path(adapter).parent] if adapter else []) + [Path(model)]:
        if (cand / "run.json").is_file():
            return of_run(cand)
        info = cand / "merge_info.json"
        if info.is_file():
            name = json.loads(info.read_text()).get("conv_template")
            if name:
                return name
    return None


@dataclass
class EvalConfig:
    """One evaluation run: generate -> merge -> convert -> score (or write the submission)."""

    task: str
    model: str
    data_root: str
    output_dir: str
    split: str | None = None  # default: the task's default split
    adapter: str | None = None
    batch_size: int = 32
    num_gpus: int = 1  # processes: one per GPU, or CPU workers without GPUs
    protocol: str = "official"
    max_new_tokens: int | None = None  # default: the task's
    dtype: str = "float32"  # base load dtype: fp32 | bf16 | fp16 (long names too); recipe: DTYPE
    attn_implementation: str | None = None  # sdpa | eager | flash_attention_2 (None: transformers' default)
    device: str = "auto"  # auto: cuda if available, else cpu
    model_id: str | None = None
    conv_template: str | None = None  # conversation format; default: the run's (run.json), else the toy base's
    limit: int | None = None  # evaluate the first N questions of the split (file order)
    overwrite: bool = False  # discard answers of a different earlier run in output_dir
    meteor: bool = True  # coco: METEOR costs ~16 s of Java per scoring; False -> null + note
    clip_weights: str | None = None  # coco: local open_clip checkpoint -> CLIPScore (else skipped, noted)
    clip_model: str = "ViT-B-32"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {sorted(TASKS)}, got {self.task!r}")
        if self.protocol not in ("official", "llava"):
            raise ValueError(f"protocol must be 'official' or 'llava', got {self.protocol!r}")
        from llava_structlora.data.conversation import DEFAULT_CONV_TEMPLATE, conv_system

        if self.conv_template is None:
            self.conv_template = recorded_conv_template(self.adapter, self.model) or DEFAULT_CONV_TEMPLATE
        conv_system(self.conv_template)  # unknown names: ValueError listing the known ones
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 (questions), got {self.limit}")
        from llava_structlora.modeling import check_attn_implementation, resolve_dtype

        resolve_dtype(self.dtype)  # a typo fails here (ModelLoadError, a ValueError), not in every worker
        check_attn_implementation(self.attn_implementation)
        if self.batch_size < 1 or self.num_gpus < 1:
            raise ValueError("batch_size and num_gpus must be >= 1")
        spec = TASKS[self.task]
        self.split = self.split or spec.default_split
        self.max_new_tokens = self.max_new_tokens or spec.max_new_tokens
        if self.model_id is None:
            self.model_id = Path(self.adapter or self.model).resolve().name
        self._resolve_device()

    def _resolve_device(self) -> None:
        import torch

        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda" and self.num_gpus > torch.cuda.device_count():
            raise ValueError(f"num_gpus={self.num_gpus} but only {torch.cuda.device_count()} GPUs are visible")

    @property
    def system(self) -> str:
        """The system prompt of the conversation format (must be the one the adapter was trained with)."""
        from llava_structlora.data.conversation import conv_system

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
