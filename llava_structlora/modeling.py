"""The ONE way the project loads a base vision-language model: training, evaluation and merging.

    model = load_base_model(path, dtype="bf16", attn_implementation="sdpa", bits=None)

Why one function: the 7B path must (1) load straight into the training dtype with no fp32 copy
(transformers v5 always builds the model on the meta device and streams each safetensors tensor
into its final dtype, so peak host memory is about the weights in that dtype, never fp32 + bf16),
(2) pick the model class from the checkpoint's ``config.model_type`` through
``AutoModelForImageTextToText`` (LLaVA-1.5 ``llava`` and LLaVA-NeXT ``llava_next`` both load), (3)
fail early and clearly when an attention backend or bitsandbytes is missing, (4) quantize (QLoRA)
only when asked, so a merge can never write into quantized storage by accident, (5) refuse a
checkpoint that leaves tensors re-initialised or unused (utils/strict_load.py), which transformers
only warns about.

Precision: only the *base* takes ``dtype``. Adapter parameters are created in fp32 by their owners
(StructLoRA factors, gates and coordinator in ``structlora/``; PEFT casts bf16/fp16 adapters to fp32
with ``autocast_adapter_dtype``), so the optimizer updates small numbers in full precision.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

logger = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2")
BITS = (4, 8)
# Never quantized: the CLIP tower and the projector are small and precision-sensitive (LLaVA's own QLoRA
# recipe skips the projector and loads the vision tower unquantized); lm_head is skipped by transformers.
# transformers matches these from the start of the module name (or as a suffix): hence the ".*" prefixes.
QUANT_SKIP_MODULES = [r".*vision_tower", r".*multi_modal_projector", "lm_head"]


class ModelLoadError(ValueError):
    """The base cannot be loaded as asked (path, dtype, backend or quantization); says what to do."""


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """bf16|fp16|fp32 (or the long names, or a torch.dtype) -> torch.dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def base_model_class(config: Any) -> type:
    """The ``*ForConditionalGeneration`` class of a config (llava, llava_next, ...)."""
    from transformers import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

    try:
        return MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING[type(config)]
    except KeyError as e:
        raise ModelLoadError(
            f"model_type {getattr(config, 'model_type', None)!r} is not an image-text-to-text "
            "model transformers knows (expected llava or llava_next)"
        ) from e


@contextlib.contextmanager
def _without_zero3_init():
    """transformers wraps every model construction in deepspeed.zero.Init while a ZeRO-3 config is
    registered; a meta-device model built for checks must not be (DeepSpeed may not be initialized yet)."""
    import transformers.integrations.deepspeed as hf_ds

    saved = hf_ds._hf_deepspeed_config_weak_ref
    hf_ds._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = saved


def meta_model(config: Any) -> nn.Module:
    """The model of ``config`` on the meta device: module names and shapes, no weights, never partitioned."""
    with _without_zero3_init(), torch.device("meta"):
        return base_model_class(config)(config)


def load_config(path: str | Path):
    """AutoConfig of a local model directory, with a clear error when it is not one."""
    from transformers import AutoConfig

    if not (Path(path) / "config.json").is_file():
        raise ModelLoadError(f"model {path}: no config.json there (expected a save_pretrained directory)")
    return AutoConfig.from_pretrained(str(path))


def check_attn_implementation(name: Optional[str]) -> None:
    """Raise ModelLoadError when the requested attention backend is unknown or not installed."""
    if name is None:
        return
    if name not in ATTN_IMPLEMENTATIONS:
        raise ModelLoadError(f"attn_implementation={name!r}: expected one of {ATTN_IMPLEMENTATIONS}")
    if name == "sdpa" and not hasattr(torch.nn.functional, "scaled_dot_product_attention"):
        raise ModelLoadError("attn_implementation=sdpa needs torch >= 2.0 (scaled_dot_product_attention)")
    if name == "flash_attention_2":
        from transformers.utils import is_flash_attn_2_available

        if importlib.util.find_spec("flash_attn") is None:
            raise ModelLoadError(
                "attn_implementation=flash_attention_2: the flash-attn package is not installed "
                "(pip install flash-attn --no-build-isolation, CUDA GPUs only); use sdpa"
            )
        if not is_flash_attn_2_available():
            raise ModelLoadError(
                "attn_implementation=flash_attention_2: flash-attn is installed but unusable here "
                "(needs a CUDA GPU of compute capability >= 8.0 and a matching build); use sdpa"
            )


def check_bits(bits: Optional[int]) -> None:
    """Raise ModelLoadError when QLoRA is asked for but cannot load (bad value, no bitsandbytes)."""
    if bits is None:
        return
    if bits not in BITS:
        raise ModelLoadError(f"bits={bits!r}: expected 4 or 8 (or unset for no quantization)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(f"bits={bits} (QLoRA) needs bitsandbytes (pinned in requirements.txt)")


def quantization_config(bits: int, compute_dtype: torch.dtype):
    """transformers' BitsAndBytesConfig of QLoRA: NF4 + double quantization, or LLM.int8()."""
    from transformers import BitsAndBytesConfig

    check_bits(bits)
    if bits == 4:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_skip_modules=QUANT_SKIP_MODULES,
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=QUANT_SKIP_MODULES)


def default_device_map(bits: Optional[int]) -> Optional[Any]:
    """Quantized weights are created on the device: this rank's GPU (LOCAL_RANK), else the CPU."""
    if bits is None:
        return None
    if torch.cuda.is_available():
        return {"": int(os.environ.get("LOCAL_RANK", "0"))}
    return {"": "cpu"}


def is_quantized(model: nn.Module) -> bool:
    """True for a model loaded with bitsandbytes (4- or 8-bit storage): never a merge target."""
    base = getattr(model, "get_base_model", lambda: model)()
    return bool(
        getattr(base, "is_loaded_in_4bit", False)
        or getattr(base, "is_loaded_in_8bit", False)
        or getattr(base, "hf_quantizer", None) is not None
    )


def _zero3_enabled() -> bool:
    from transformers.integrations import is_deepspeed_zero3_enabled

    return bool(is_deepspeed_zero3_enabled())


def _safetensors_shards(path: Path) -> Optional[list[Path]]:
    """The checkpoint's safetensors files (index first), or None for other formats."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [path / f for f in files]
    single = path / "model.safetensors"
    return [single] if single.is_file() else None


def _pread_state_dict(shards: list[Path], stack: contextlib.ExitStack) -> dict[str, Any]:
    """Lazy tensor slices read with pread instead of mmap.

    transformers maps every shard and keeps the maps open until the whole model is loaded, so the
    touched file pages of the entire checkpoint count as resident memory on top of the converted
    weights: peak RSS about 2x the bf16 bytes. Reading each tensor with pread into a buffer that is
    freed after its conversion keeps the peak at the weights in ``dtype`` plus one tensor
    (measured: docs/RESULTS.md, "Host memory while loading the base: fp32 (old) vs bf16 load_base_model (new)").
    """
    from safetensors import safe_open

    state: dict[str, Any] = {}
    for shard in shards:
        handle = stack.enter_context(safe_open(str(shard), framework="pt", device="cpu", backend="pread"))
        state.update({k: handle.get_slice(k) for k in handle.keys()})
    return state


def _load_generation_config(model: nn.Module, path: Path) -> None:
    if (path / "generation_config.json").is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(str(path))


def load_base_model(
    path: str | Path,
    *,
    dtype: str | torch.dtype,
    attn_implementation: Optional[str] = None,
    bits: Optional[int] = None,
    device_map: Optional[Any] = None,
) -> nn.Module:
    """Load the base VLM at ``path`` in ``dtype`` (the compute dtype when ``bits`` quantizes it).

    Low host memory: weights stream from safetensors into ``dtype`` (no fp32 intermediate), read
    tensor by tensor with ``pread`` (see ``_pread_state_dict``); under DeepSpeed ZeRO-3 transformers
    partitions them as they load (``zero.Init``), so no rank holds the full model.
    ``attn_implementation=None`` keeps transformers' default (sdpa when available).
    """
    from llava_structlora.utils.artifacts import check_model_weights
    from llava_structlora.utils.strict_load import from_pretrained_strict

    torch_dtype = resolve_dtype(dtype)
    check_attn_implementation(attn_implementation)
    check_bits(bits)
    config = load_config(path)
    cls = base_model_class(config)
    check_model_weights(path)  # a truncated or garbled shard is named before any loader sees it
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if bits is not None:
        kwargs["quantization_config"] = quantization_config(bits, torch_dtype)
    device_map = device_map if device_map is not None else default_device_map(bits)
    if device_map is not None:
        kwargs["device_map"] = device_map
    shards = _safetensors_shards(Path(path)) if bits is None and not _zero3_enabled() else None
    if shards:
        from llava_structlora.utils.strict_load import check_loading_info

        with contextlib.ExitStack() as stack:
            state = _pread_state_dict(shards, stack)
            model, info = cls.from_pretrained(None, config=config, state_dict=state, output_loading_info=True, **kwargs)
        check_loading_info(info, path)  # a re-initialised tensor is an error
        # from_pretrained(None, ...) leaves config._name_or_path as the string 'None'; PEFT (and our export)
        # record it as the adapter's base_model_name_or_path, so both name the real base.
        model.name_or_path = model.config._name_or_path = str(path)
        _load_generation_config(model, Path(path))
    else:
        model = from_pretrained_strict(cls, path, **kwargs)  # a re-initialised tensor is an error
    logger.info(
        "loaded %s as %s (dtype %s, attention %s, bits %s)",
        path,
        cls.__name__,
        torch_dtype,
        getattr(model.config, "_attn_implementation", attn_implementation),
        bits,
    )
    return model
