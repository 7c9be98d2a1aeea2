"""Load a base LLaVA plus an optional adapter and merge it, so inference costs exactly the base.

`adapter` may be:
- None: the base as is (also how a merged model saved with `save_pretrained` is evaluated);
- a stock PEFT adapter dir (`adapter_config.json`): `PeftModel.from_pretrained` + `merge_and_unload`;
- a StructLoRA state dir (`save_structlora` output): `load_structlora` + `merge_structlora`;
- a merged full model dir (`config.json` + weights, no adapter config): loaded instead of `base`;
- a training run dir (`outputs/<run>/`) holding `adapter/` and/or `structlora/` (or `model/` for
  full fine-tuning): `adapter/` is preferred (stock PEFT, carries a tuned projector via
  `modules_to_save`), else `structlora/`, else `model/`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from llava_structlora.modeling import DTYPES, ModelLoadError, is_quantized, load_base_model, resolve_dtype  # noqa: F401
from llava_structlora.rundir import ADAPTER_CONFIG, RunDir
from llava_structlora.structlora import load_structlora, merge_structlora
from llava_structlora.utils.jsonio import JsonInputError, read_adapter_config
from llava_structlora.utils.strict_load import peft_from_pretrained_strict

logger = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def _is_full_model(path: Path) -> bool:
    return (path / "config.json").is_file() and any((path / f).is_file() for f in WEIGHT_FILES)


def _is_structlora(path: Path) -> bool:
    return path.name == "structlora" or any("structlora" in p.name for p in path.glob("*.json"))


def adapter_kind(adapter: str | Path | None) -> tuple[str, Path | None]:
    """('none'|'peft'|'structlora'|'merged', resolved path) for an adapter argument."""
    if adapter is None or str(adapter) == "":
        return "none", None
    path = Path(adapter)
    if not path.is_dir():
        raise ModelLoadError(f"adapter {path} is not a directory")
    run = RunDir(path)  # a training run dir: its adapter/, structlora/ or model/ (rundir.py's layout)
    for cand in (path, run.adapter):
        if (cand / ADAPTER_CONFIG).is_file():
            check_adapter_config(cand / ADAPTER_CONFIG)
            return "peft", cand
    if run.structlora.is_dir():
        return "structlora", run.structlora
    if _is_full_model(run.full_model):  # a full fine-tuning run dir
        return "merged", run.full_model
    if _is_full_model(path):
        return "merged", path
    if _is_structlora(path):
        return "structlora", path
    found = sorted(p.name for p in path.iterdir())[:10]
    raise ModelLoadError(
        f"adapter {path}: neither a PEFT adapter (adapter_config.json), a StructLoRA dir "
        f"(structlora/), nor a merged model (config.json + model.safetensors); found {found}"
    )


def check_adapter_config(path: Path) -> dict:
    """adapter_config.json parsed, or ModelLoadError naming it (PEFT's own error names no file)."""
    try:
        return read_adapter_config(path)
    except JsonInputError as e:
        raise ModelLoadError(str(e)) from None


def _merge_structlora(model: torch.nn.Module, path: Path) -> torch.nn.Module:
    return merge_structlora(load_structlora(model, path))


def load_model(
    base: str | Path,
    adapter: str | Path | None = None,
    dtype: str | torch.dtype = "float32",
    device: str | torch.device = "cpu",
    attn_implementation: str | None = None,
) -> tuple[torch.nn.Module, Any]:
    """(model in eval mode with any adapter merged, processor); the base loads directly in `dtype`."""
    from transformers import AutoProcessor

    kind, apath = adapter_kind(adapter)
    weights = apath if kind == "merged" else Path(base)
    if not _is_full_model(weights):
        raise ModelLoadError(f"model {weights}: expected a save_pretrained dir (config.json + model.safetensors)")
    proc_dir = apath if kind == "merged" and (apath / "processor_config.json").is_file() else Path(base)
    processor = AutoProcessor.from_pretrained(proc_dir)
    model = load_base_model(weights, dtype=dtype, attn_implementation=attn_implementation)
    if kind in ("peft", "structlora") and is_quantized(model):
        raise ModelLoadError(
            f"base {weights} is stored quantized (4/8-bit): an adapter merged into quantized "
            "storage is rounded away; evaluate with the original bf16/fp16 base"
        )
    if kind == "peft":
        model = peft_from_pretrained_strict(model, apath).merge_and_unload()
    elif kind == "structlora":
        model = _merge_structlora(model, apath)
    logger.info("loaded %s (adapter: %s %s)", weights, kind, apath or "")
    return model.to(device).eval(), processor
