"""What several method specs share when they build, save and export a model: the PEFT options every
baseline uses (StructLoRA's targets), the seeded LoRA init, the full fine-tune's parameters, and the
tuned multimodal projector (its parameters, its checkpoint file, its place in the exported adapter).

All adapter methods share the target modules (StructLoRA's target presets), rank, alpha, data and
schedule, so that the comparisons of the paper's tables are fair.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from llava_structlora.structlora import name_seed, resolve_target_modules
from llava_structlora.structlora.config import TARGET_PRESETS
from llava_structlora.utils.io import atomic_save_safetensors, atomic_write_json

from .errors import ConfigError

PROJECTOR_FILE = "mm_projector.safetensors"  # a tuned projector beside StructLoRA's checkpoint state
PROJECTOR = "multi_modal_projector"


def target_regex(targets: str) -> str:
    """A full-match regex (PEFT semantics) for a StructLoRA target preset or a user regex."""
    patterns = TARGET_PRESETS.get(targets, [targets])
    return "|".join(f"(?:.*{p})" if not p.startswith(".*") else f"(?:{p})" for p in patterns)


def peft_common(margs: Any, dropout: float, model: nn.Module | None = None, keep_dead_layers: bool = False) -> dict:
    """The PEFT options every baseline shares (targets, alpha, dropout, bias, a tuned projector).

    With ``model``, the targets are the explicit module list of StructLoRA's resolver (same live modules,
    dead vision layers left out unless ``keep_dead_layers``); without it, the preset's regex.
    A tuned projector goes in `modules_to_save`, so the stock PEFT adapter carries it.
    """
    targets = (
        target_regex(margs.targets)
        if model is None
        else resolve_target_modules(model, margs.targets, keep_dead_layers=keep_dead_layers)
    )
    return dict(
        target_modules=targets,
        lora_alpha=margs.lora_alpha,
        lora_dropout=dropout,
        bias="none",
        modules_to_save=[PROJECTOR] if margs.tune_mm_projector else None,
    )


def align_lora_init(model: nn.Module, seed: int) -> int:
    """Give PEFT's lora_A the same per-module seeded init as StructLoRA (B stays 0).

    PEFT draws A from the global RNG in module order; StructLoRA seeds each module from
    (seed, module name). Using one init for every method makes baselines start from identical
    factors (fair comparisons; `lora` == `structlora --filter none --coordinator none` step for step).
    """
    from peft.tuners.lora import LoraLayer  # peft's tuner module: loaded only by the PEFT methods

    n = 0
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and "default" in module.lora_A:
            weight = module.lora_A["default"].weight
            gen = torch.Generator(device=weight.device).manual_seed(
                name_seed(seed, name.removeprefix("base_model.model."))
            )
            with torch.no_grad():
                nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=gen)
            n += 1
    return n


def enable_full(model: nn.Module) -> int:
    """`full`: every language-model parameter (incl. embeddings and lm_head) trains."""
    n = 0
    for name, p in model.named_parameters():
        if re.search(r"(?:^|\.)(language_model|lm_head)\.", f".{name}"):
            p.requires_grad_(True)
            n += 1
    if n == 0:
        raise ConfigError("method=full: found no language_model parameters to train")
    return n


def projector_module(model: nn.Module) -> nn.Module:
    """The multimodal projector, wherever PEFT wrapping put it."""
    for name, module in model.named_modules():
        if name.endswith(PROJECTOR):
            return module
    raise ConfigError("tune_mm_projector: the model has no multi_modal_projector")


def projector_param_names(model: nn.Module) -> set[str]:
    return {n for n, _ in model.named_parameters() if f".{PROJECTOR}." in f".{n}"}


def trained_projector(model: nn.Module) -> dict:
    """The tuned projector's tensors (empty when the projector is frozen)."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad and f".{PROJECTOR}." in f".{n}"}


def add_projector_to_adapter(model: nn.Module, adapter_dir: Path) -> None:
    """A tuned projector joins the exported adapter as PEFT `modules_to_save` (stock PEFT loads it)."""
    projector = trained_projector(model)
    if not projector:
        return
    weights = adapter_dir / "adapter_model.safetensors"
    tensors = dict(load_file(str(weights)))
    tensors.update({f"base_model.model.{n}": t for n, t in projector.items()})
    atomic_save_safetensors(tensors, weights, metadata={"format": "pt"})
    cfg_path = adapter_dir / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["modules_to_save"] = sorted(set(cfg.get("modules_to_save") or []) | {PROJECTOR})
    atomic_write_json(cfg_path, cfg)


def save_projector(model: nn.Module, out_dir: Path, projector_params: set[str]) -> None:
    """The projector's tensors beside a checkpoint that holds no base weights (nothing when it is frozen)."""
    projector = {n: p.detach() for n, p in model.named_parameters() if n in projector_params}
    if projector:
        atomic_save_safetensors(projector, Path(out_dir) / PROJECTOR_FILE)


def load_projector(model: nn.Module, ckpt: Path) -> None:
    """Restore save_projector's file when the checkpoint has one."""
    proj_file = Path(ckpt) / PROJECTOR_FILE
    if not proj_file.is_file():
        return
    tensors = load_file(str(proj_file))
    missing = set(tensors) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ValueError(f"{proj_file}: tensors not in the model: {sorted(missing)[:3]}")
    model.load_state_dict(tensors, strict=False)
