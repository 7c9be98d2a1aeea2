"""The layout of one training run's output directory, known only here.

adapter/            stock PEFT adapter (every adapter method)
model/              the whole fine-tuned model (method `full`, save_pretrained)
structlora/         full StructLoRA state for further training (save_structlora)
checkpoint-N/       Trainer checkpoints (complete once COMPLETE.json exists, see train/checkpoints.py)
run_config.json     the run's identity, written before training (a mismatched resume is refused)
run.json            base model, arguments, git commit, seeds, times, final loss (written at the end)
metrics.json        validation of the adapter;  metrics_base.json: of the base
eval_adapter/       that validation's answers
diagnostics.jsonl   StructLoRA diagnostics every N steps;  plots/: their PNGs
moved.json          what training moved (StructLoRA: gates, open directions, update norms)

Every other module (training, evaluation, merge, release, experiments) asks a `RunDir` for these paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llava_structlora.data.conversation import DEFAULT_CONV_TEMPLATE, conv_system
from llava_structlora.utils.io import read_optional_json

ADAPTER_CONFIG = "adapter_config.json"  # what makes a directory a PEFT adapter


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory (nothing is created by constructing it)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def adapter(self) -> Path:
        return self.path / "adapter"

    @property
    def full_model(self) -> Path:
        return self.path / "model"

    @property
    def structlora(self) -> Path:
        return self.path / "structlora"

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def identity_json(self) -> Path:
        return self.path / "run_config.json"

    @property
    def diagnostics(self) -> Path:
        return self.path / "diagnostics.jsonl"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def moved(self) -> Path:
        return self.path / "moved.json"

    def checkpoint(self, step: int) -> Path:
        """`checkpoint-<step>/`, the Trainer's name for the checkpoint of global step `step`."""
        return self.path / f"checkpoint-{step}"

    def export_dir(self, full_model: bool) -> Path:
        """Where the trained result goes: `model/` for a full fine-tune, else `adapter/`."""
        return self.full_model if full_model else self.adapter

    def metrics(self, which: str = "adapter") -> Path:
        """Validation scores of the adapter (`metrics.json`) or of the base (`metrics_base.json`)."""
        return self.path / ("metrics.json" if which == "adapter" else f"metrics_{which}.json")

    def eval_dir(self, which: str = "adapter") -> Path:
        return self.path / f"eval_{which}"

    def is_finished(self) -> bool:
        """True once the run exported its adapter (or full model)."""
        return (self.adapter / ADAPTER_CONFIG).is_file() or (self.full_model / "config.json").is_file()

    def is_complete(self) -> bool:
        """True once a training finished here: run.json (written after the export) and the deliverable exist."""
        return self.run_json.is_file() and self.is_finished()

    def discard_results(self) -> None:
        """Forget run.json and the adapter's metrics.json: a new training is about to replace the weights they
        describe (the base's metrics stay valid)."""
        for path in (self.run_json, self.metrics("adapter")):
            path.unlink(missing_ok=True)

    def peft_adapter(self) -> Path | None:
        """The PEFT adapter dir: `adapter/` of a run, or the path itself when it is a bare adapter dir."""
        return next((d for d in (self.adapter, self.path) if (d / ADAPTER_CONFIG).is_file()), None)

    def deliverable(self) -> Path:
        """The exported adapter dir (or full model dir); FileNotFoundError names the run when neither exists."""
        for d in (self.adapter, self.full_model):
            if d.is_dir():
                return d
        raise FileNotFoundError(f"{self.path}: no adapter/ or model/ (training did not finish?)")

    def read_run(self) -> dict[str, Any]:
        """run.json ({} when absent, e.g. for a run still training)."""
        return read_optional_json(self.run_json)

    def read_metrics(self, which: str = "adapter") -> dict[str, Any]:
        """metrics.json (or metrics_<which>.json); {} when absent."""
        return read_optional_json(self.metrics(which))

    def conv_template(self) -> str:
        """The conversation format the run trained with (run.json); runs that predate the option used the default."""
        run = self.read_run()
        data_args = (run.get("config") or {}).get("DataArguments") or {}
        name = run.get("conv_template") or data_args.get("conv_template") or DEFAULT_CONV_TEMPLATE
        conv_system(name)  # an unknown name is an error here, not a silently wrong prompt later
        return name

    @classmethod
    def holding(cls, path: str | Path) -> RunDir | None:
        """The run whose files include `path`: `path` itself or its parent (an `adapter/`) when it has run.json.
        A release folder counts too: it carries the run's run.json."""
        path = Path(path)
        return next((cls(d) for d in (path, path.parent) if (d / "run.json").is_file()), None)


def identity_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """`option: saved -> current` for every knob that differs (keys missing on one side count)."""
    missing = object()
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, missing), current.get(key, missing)
        if a != b:
            out.append(f"{key}: {'(unset)' if a is missing else a!r} -> {'(unset)' if b is missing else b!r}")
    return out


class ResumeMismatchError(ValueError):
    """A resume into a run directory whose recorded configuration differs from the requested one."""


def check_resume_identity(run: RunDir, identity: dict[str, Any]) -> None:
    """Refuse (ResumeMismatchError listing the differences) when `run` was started with another config.

    A run directory without `run_config.json` (a new run, or one written before identities existed)
    passes: there is nothing to compare with. An identity recorded before every weight-changing option counted
    (no `identity_version`) is compared on the options both record.
    """
    saved = read_optional_json(run.identity_json)
    if not saved:
        return
    if "identity_version" not in saved:
        common = set(saved) & set(identity)
        saved, identity = {k: saved[k] for k in common}, {k: identity[k] for k in common}
    diffs = identity_differences(saved, identity)
    if diffs:
        raise ResumeMismatchError(
            f"{run.path} was trained with another configuration; refusing to resume it with this one. "
            "Differences (recorded -> requested):\n  "
            + "\n  ".join(diffs)
            + "\nUse another OUTPUT_DIR, RESUME=none to start over in it, or the recorded values."
        )
