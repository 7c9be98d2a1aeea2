"""Each `--method` as one small spec object: config checks, how the model is built, its optimizer groups,
its Trainer callbacks, what its checkpoints hold and how they load, how it is exported, and what it adds
at the end of a run. Training code asks ``get_spec(method)``; it never compares method names.

    structlora                 StructLoRASpec   (llava_structlora.structlora; its own checkpoint state)
    lora, dora, lora_dropout   PeftLoraSpec     (PEFT LoraConfig; dora = use_dora; lora_dropout = dropout 0.1)
    adalora                    AdaLoraSpec      (PEFT AdaLoraConfig; rank allocation callback; no DeepSpeed)
    full                       FullSpec         (every language-model parameter; exports the whole model)

A new method is one subclass registered in SPECS (and a test in tests/train/test_specs.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor, nn

    from llava_structlora.rundir import RunDir

PROJECTOR_FILE = "mm_projector.safetensors"  # a tuned projector beside StructLoRA's checkpoint state


class MethodSpec:
    """Defaults shared by the methods; a subclass overrides what differs."""

    name = ""
    peft = False  # a PEFT model: a tuned projector travels as PEFT `modules_to_save`
    full_model = False  # trains (and exports) the base weights themselves
    owns_checkpoint_weights = False  # checkpoints hold save_weights' files instead of the Trainer's model save

    def check(self, margs: Any, targs: Any, zero_stage: Optional[int] = None) -> None:
        """Raise ConfigError for a setting this method cannot train with (before anything is built).

        Args:
            zero_stage: the DeepSpeed config's ZeRO stage when a config file is given (None: no DeepSpeed file).
        """

    def dropout(self, margs: Any) -> float:
        """Adapter input dropout (`--lora_dropout`, default 0)."""
        return margs.lora_dropout or 0.0

    def build(self, model: nn.Module, margs: Any, sargs: Any, seed: int, total_steps: int) -> nn.Module:
        """Make the loaded base trainable for this method (the base's own params are frozen unless full)."""
        raise NotImplementedError

    def peft_config(self, margs: Any, total_steps: int, common: dict[str, Any]) -> Any:
        """The PEFT config (PEFT methods only), given the options every PEFT method shares."""
        raise ConfigError(f"method={self.name} is not a PEFT method")

    def param_groups(self, model: nn.Module, lr: float, weight_decay: float) -> tuple[list[dict], set[str]]:
        """Optimizer groups this method sets itself, and the parameter names they cover (the rest: AdamW
        decay / no-decay groups of the Trainer, the projector at mm_projector_lr)."""
        return [], set()

    def callbacks(self, trainer: Any, run: RunDir) -> list:
        """TrainerCallbacks this method needs."""
        return []

    def on_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        """Called once per optimizer step, before its first forward."""

    def regularizer(self, model: nn.Module) -> Optional[Tensor]:
        """A term added to the task loss (None: none)."""
        return None

    def save_weights(self, model: nn.Module, out_dir: Path, projector_params: set[str]) -> None:
        """Checkpoint weights when owns_checkpoint_weights (rank 0)."""
        raise NotImplementedError

    def load_weights(self, model: nn.Module, ckpt: Path) -> None:
        """Restore save_weights' files (resume without DeepSpeed)."""
        raise NotImplementedError

    def after_deepspeed_resume(self, model: nn.Module, ckpt: Path) -> None:
        """State that DeepSpeed's checkpoint does not hold, restored after its load."""

    def export(self, model: nn.Module, run: RunDir) -> Path:
        """Write the run's deliverable atomically (default: save_pretrained into run.export_dir)."""
        from llava_structlora.utils.io import atomic_directory

        out = run.export_dir(full_model=self.full_model)
        with atomic_directory(out) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
        return out

    def finish(self, trainer: Any, run: RunDir, plots: bool) -> dict[str, Any]:
        """End of training (rank 0, after export): extra run.json fields and files (plots)."""
        return {}


class StructLoRASpec(MethodSpec):
    name = "structlora"
    owns_checkpoint_weights = True

    def check(self, margs: Any, targs: Any, zero_stage: Optional[int] = None) -> None:
        # ZeRO-3 is fine: train/zero3.py keeps the factors the coordinator reads across layers whole on every rank
        kwargs = targs.activation_checkpointing_kwargs or {}
        if targs.activation_checkpointing and kwargs.get("use_reentrant", False):
            raise ConfigError(
                "gradient_checkpointing_kwargs use_reentrant=true: StructLoRA needs non-reentrant "
                "activation checkpointing (its shared coordinator graph); drop the option"
            )

    def build(self, model, margs, sargs, seed, total_steps):
        from llava_structlora.structlora import apply_structlora

        from .config import build_structlora_config

        return apply_structlora(model, build_structlora_config(margs, sargs, seed))

    def param_groups(self, model, lr, weight_decay):
        from llava_structlora.structlora.optim import structlora_param_groups, structlora_param_names

        return structlora_param_groups(model, lr, weight_decay), set(structlora_param_names(model))

    def callbacks(self, trainer, run):
        from .callbacks import DiagnosticsCallback

        return [DiagnosticsCallback(trainer, trainer.args.diagnostics_steps, run.diagnostics)]

    def on_step(self, model, step, max_steps):
        from llava_structlora.structlora import structlora_on_step

        structlora_on_step(model, step, max_steps)

    def regularizer(self, model):
        from llava_structlora.structlora import structlora_regularizer

        return structlora_regularizer(model)

    def save_weights(self, model, out_dir, projector_params):
        """save_structlora (adapter + coordinator + graph), never the frozen base; a tuned projector beside it."""
        from llava_structlora.structlora import save_structlora
        from llava_structlora.utils.io import atomic_save_safetensors

        save_structlora(model, out_dir)
        projector = {n: p.detach() for n, p in model.named_parameters() if n in projector_params}
        if projector:
            atomic_save_safetensors(projector, Path(out_dir) / PROJECTOR_FILE)

    def load_weights(self, model, ckpt):
        from safetensors.torch import load_file

        from llava_structlora.structlora import load_structlora

        load_structlora(model, ckpt)  # tensors and the coordinator graph
        proj_file = Path(ckpt) / PROJECTOR_FILE
        if proj_file.is_file():
            tensors = load_file(str(proj_file))
            missing = set(tensors) - {n for n, _ in model.named_parameters()}
            if missing:
                raise ValueError(f"{proj_file}: tensors not in the model: {sorted(missing)[:3]}")
            model.load_state_dict(tensors, strict=False)

    def after_deepspeed_resume(self, model, ckpt):
        """The coordinator graph (refreshed similarity edges are in no state dict)."""
        from llava_structlora.structlora import load_structlora_graph

        load_structlora_graph(model, ckpt)

    def export(self, model, run):
        """Stock PEFT adapter (export_peft_adapter) + the full StructLoRA state to continue training."""
        from llava_structlora.structlora import export_peft_adapter, save_structlora
        from llava_structlora.utils.io import atomic_directory, atomic_save_safetensors

        from .outputs import add_projector_to_adapter, trained_projector

        with atomic_directory(run.adapter) as tmp:
            export_peft_adapter(model, tmp)
            add_projector_to_adapter(model, tmp)
        with atomic_directory(run.structlora) as tmp:
            save_structlora(model, tmp)
            projector = trained_projector(model)
            if projector:
                atomic_save_safetensors(projector, tmp / PROJECTOR_FILE)
        return run.adapter

    def finish(self, trainer, run, plots):
        from llava_structlora.structlora import structlora_moved
        from llava_structlora.utils.io import atomic_write_json

        model = trainer.accelerator.unwrap_model(trainer.model)
        moved = structlora_moved(model)  # eval-gate histograms, open directions, update norms
        atomic_write_json(run.path / "moved.json", moved)
        if plots:
            from llava_structlora.structlora import structlora_diagnostics

            from .plots import write_plots

            final = structlora_diagnostics(model, with_cosine_matrix=True)
            write_plots(run.diagnostics, final, run.plots, moved=moved)
        return {"structlora": str(run.structlora), "moved": str(run.path / "moved.json")}


class PeftLoraSpec(MethodSpec):
    """LoRA / DoRA / LoRA-Dropout through PEFT, on StructLoRA's targets and with its per-module seeded init."""

    peft = True

    def __init__(self, name: str, use_dora: bool = False, default_dropout: Optional[float] = None) -> None:
        self.name, self.use_dora, self.default_dropout = name, use_dora, default_dropout

    def check(self, margs, targs, zero_stage=None):
        if self.default_dropout is not None and self.dropout(margs) <= 0:
            raise ConfigError(f"method={self.name} needs lora_dropout > 0")

    def dropout(self, margs):
        if self.default_dropout is not None and margs.lora_dropout is None:
            return self.default_dropout
        return margs.lora_dropout or 0.0

    def peft_config(self, margs: Any, total_steps: int, common: dict[str, Any]):
        """The PEFT config given the options every PEFT method shares (targets, alpha, dropout, ...)."""
        from peft import LoraConfig

        return LoraConfig(r=margs.lora_r, use_dora=self.use_dora, **common)

    def build(self, model, margs, sargs, seed, total_steps):
        from peft import get_peft_model

        from .methods import peft_config

        model = get_peft_model(
            model, peft_config(margs, total_steps, model, keep_dead_layers=getattr(sargs, "keep_dead_layers", False))
        )
        self.init_factors(model, seed)
        return model

    def init_factors(self, model, seed: int) -> None:
        """Same per-module seeded lora_A as StructLoRA (fair comparisons, identical starting factors)."""
        from .methods import align_lora_init

        align_lora_init(model, seed)


class AdaLoraSpec(PeftLoraSpec):
    def __init__(self) -> None:
        super().__init__("adalora")

    def check(self, margs, targs, zero_stage=None):
        if targs.deepspeed:
            raise ConfigError(
                "method=adalora: PEFT's rank allocator reads param.grad after each step, which the "
                "DeepSpeed engine has already zeroed/partitioned; run it with NO_DEEPSPEED=1"
            )

    def peft_config(self, margs, total_steps, common):
        from peft import AdaLoraConfig

        if total_steps <= 0:
            raise ConfigError("method=adalora needs a known number of training steps (total_step)")
        tinit, tfinal = max(1, total_steps // 10), max(1, total_steps // 5)
        if tinit + tfinal >= total_steps:
            raise ConfigError(f"method=adalora: {total_steps} steps are too few for its warm-up/final phases")
        return AdaLoraConfig(
            init_r=max(margs.adalora_init_r, margs.lora_r),
            target_r=margs.lora_r,
            total_step=total_steps,
            tinit=tinit,
            tfinal=tfinal,
            deltaT=1,
            **common,
        )

    def init_factors(self, model, seed):
        """AdaLoRA's SVD-style factors keep PEFT's own init."""

    def callbacks(self, trainer, run):
        from .callbacks import AdaLoraCallback

        return [AdaLoraCallback(trainer)]


class FullSpec(MethodSpec):
    name = "full"
    full_model = True

    def check(self, margs, targs, zero_stage=None):
        if margs.bits is not None:
            raise ConfigError(f"bits={margs.bits}: a quantized base cannot be fully fine-tuned; use an adapter method")
        if zero_stage == 3:
            raise ConfigError(
                f"deepspeed={targs.deepspeed}: method=full with ZeRO-3: the end-of-run export reads "
                "whole weights on rank 0, which ZeRO-3 partitions; use zero_configs/zero2.json or "
                "zero2_offload.json"
            )

    def build(self, model, margs, sargs, seed, total_steps):
        from .methods import enable_full

        for p in model.parameters():
            p.requires_grad_(False)
        enable_full(model)
        return model


SPECS: dict[str, MethodSpec] = {
    s.name: s
    for s in (
        StructLoRASpec(),
        PeftLoraSpec("lora"),
        PeftLoraSpec("dora", use_dora=True),
        AdaLoraSpec(),
        PeftLoraSpec("lora_dropout", default_dropout=0.1),
        FullSpec(),
    )
}
METHODS = tuple(SPECS)


def get_spec(method: str) -> MethodSpec:
    """The spec of `method`; ConfigError listing the known methods otherwise."""
    try:
        return SPECS[method]
    except KeyError:
        raise ConfigError(f"method={method!r}: expected one of {METHODS}") from None
