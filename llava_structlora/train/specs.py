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
from typing import Any, Optional

from torch import Tensor, nn

from llava_structlora.rundir import RunDir
from llava_structlora.structlora import (
    StructLoRAConfig,
    apply_structlora,
    export_peft_adapter,
    load_structlora,
    load_structlora_graph,
    save_structlora,
    structlora_diagnostics,
    structlora_moved,
    structlora_on_step,
    structlora_param_groups,
    structlora_regularizer,
)
from llava_structlora.structlora.optim import structlora_param_names
from llava_structlora.utils.io import atomic_directory, atomic_save_safetensors, atomic_write_json

from .builders import (
    PROJECTOR_FILE,
    add_projector_to_adapter,
    align_lora_init,
    enable_full,
    load_projector,
    peft_common,
    save_projector,
    trained_projector,
)
from .callbacks import AdaLoraCallback, DiagnosticsCallback
from .errors import ConfigError
from .plots import write_plots


class MethodSpec:
    """Defaults shared by the methods; a subclass overrides what differs.

    The hooks that depend on the adapter's knobs take the run's `StructLoRAConfig` (TrainConfig.adapter,
    built once from the parsed options); None means the model's own (direct library use).
    """

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

    def build(self, model: nn.Module, margs: Any, adapter: StructLoRAConfig, total_steps: int) -> nn.Module:
        """Make the loaded base trainable for this method (the base's own params are frozen unless full).

        Args:
            adapter: the run's adapter knobs (rank, alpha, targets, seed, ... for every adapter method).
        """
        raise NotImplementedError

    def peft_config(self, margs: Any, total_steps: int, common: dict[str, Any]) -> Any:
        """The PEFT config (PEFT methods only), given the options every PEFT method shares."""
        raise ConfigError(f"method={self.name} is not a PEFT method")

    def param_groups(
        self, model: nn.Module, lr: float, weight_decay: float, adapter: Optional[StructLoRAConfig] = None
    ) -> tuple[list[dict], set[str]]:
        """Optimizer groups this method sets itself, and the parameter names they cover (the rest: AdamW
        decay / no-decay groups of the Trainer, the projector at mm_projector_lr)."""
        return [], set()

    def callbacks(self, trainer: Any, run: RunDir) -> list:
        """TrainerCallbacks this method needs."""
        return []

    def on_step(self, model: nn.Module, step: int, max_steps: int) -> None:
        """Called once per optimizer step, before its first forward."""

    def regularizer(self, model: nn.Module, adapter: Optional[StructLoRAConfig] = None) -> Optional[Tensor]:
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

    def build(self, model, margs, adapter, total_steps):
        return apply_structlora(model, adapter)

    def param_groups(self, model, lr, weight_decay, adapter=None):
        """Factors, gates (`gate_lr_mult`) and coordinator (`coordinator_lr_mult`) at their own lr."""
        return structlora_param_groups(model, lr, weight_decay, adapter), set(structlora_param_names(model))

    def callbacks(self, trainer, run):
        return [DiagnosticsCallback(trainer, trainer.args.diagnostics_steps, run.diagnostics)]

    def on_step(self, model, step, max_steps):
        structlora_on_step(model, step, max_steps)

    def regularizer(self, model, adapter=None):
        return structlora_regularizer(model, adapter)

    def save_weights(self, model, out_dir, projector_params):
        """save_structlora (adapter + coordinator + graph), never the frozen base; a tuned projector beside it."""
        save_structlora(model, out_dir)
        save_projector(model, out_dir, projector_params)

    def load_weights(self, model, ckpt):
        load_structlora(model, ckpt)  # tensors and the coordinator graph
        load_projector(model, ckpt)

    def after_deepspeed_resume(self, model, ckpt):
        """The coordinator graph (refreshed similarity edges are in no state dict)."""
        load_structlora_graph(model, ckpt)

    def export(self, model, run):
        """Stock PEFT adapter (export_peft_adapter) + the full StructLoRA state to continue training."""
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
        model = trainer.accelerator.unwrap_model(trainer.model)
        moved = structlora_moved(model)  # eval-gate histograms, open directions, update norms
        atomic_write_json(run.moved, moved)
        if plots:
            final = structlora_diagnostics(model, with_cosine_matrix=True)
            write_plots(run.diagnostics, final, run.plots, moved=moved)
        return {"structlora": str(run.structlora), "moved": str(run.moved)}


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
        from peft import LoraConfig  # peft is imported where a PEFT method is built (heavy import)

        return LoraConfig(r=margs.lora_r, use_dora=self.use_dora, **common)

    def build(self, model, margs, adapter, total_steps):
        from peft import get_peft_model

        common = peft_common(margs, self.dropout(margs), model, keep_dead_layers=adapter.keep_dead_layers)
        model = get_peft_model(model, self.peft_config(margs, total_steps, common))
        self.init_factors(model, adapter.seed)
        return model

    def init_factors(self, model, seed: int) -> None:
        """Same per-module seeded lora_A as StructLoRA (fair comparisons, identical starting factors)."""
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

    def build(self, model, margs, adapter, total_steps):
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
