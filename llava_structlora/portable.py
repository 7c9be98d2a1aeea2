"""Write model folders and PEFT adapters that load the same under transformers 4.57 and 5.x.

transformers 5 ``save_pretrained`` writes three things that transformers 4.57 misreads:

- **weights**: the CLIP/SigLIP tower's keys lose their ``vision_model.`` level
  (``vision_tower.encoder...`` instead of ``vision_tower.vision_model.encoder...``). v4 does not
  know that name and silently re-initialises every vision-tower tensor. v5 reads both names
  through its checkpoint conversion mapping, so we store the v4 names.
- **tokenizer_config.json**: ``tokenizer_class: TokenizersBackend`` (a class v4 lacks),
  ``extra_special_tokens`` as a list (v4 wants a dict) and ``add_prefix_space`` (v4's fast Llama
  tokenizer then insists on converting from a sentencepiece file that is not there).
- **config.json**: RoPE settings only in ``rope_parameters``; v4 reads ``rope_theta``/``rope_scaling``.
- **processor files**: ``CLIPImageProcessor`` means torchvision resizing in v5 and PIL resizing in v4
  (the ``...Fast`` name selects torchvision in both), and a ``PreTrainedTokenizerFast`` fallback returns
  ``token_type_ids`` under v4, which ``generate`` refuses, unless ``model_input_names`` says otherwise.

A PEFT adapter saved under v5 names its vision-tower modules the v5 way; on a v4 base those LoRA
factors match nothing and are dropped without an error. ``make_adapter_portable`` stores v4 keys
(v5 PEFT converts them on load) and rewrites ``target_modules`` / rank and alpha patterns into
regexes that match both spellings. Every rewrite is idempotent and done with atomic writes.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from llava_structlora.utils.io import atomic_save_safetensors, atomic_write_json
from llava_structlora.utils.tower_names import BOTH_TOWER_RX, both_versions_regex, v4_key, v5_key  # noqa: F401

logger = logging.getLogger(__name__)
# The versions a release is tested to load under (tests/release/test_portable.py).
SUPPORTED_TRANSFORMERS = ("4.57", "5.23")
TOKENIZER_FALLBACK = "PreTrainedTokenizerFast"  # v4's class for "a tokenizer.json, nothing else"
NAMED_SPECIAL = ("image_token", "video_token", "boi_token", "eoi_token")


# ---------------------------------------------------------------------------- weights
def _weight_files(folder: Path, stem: str) -> list[Path]:
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        return sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()})
    single = folder / f"{stem}.safetensors"
    return [single] if single.is_file() else []


def rename_safetensors(path: Path, rename) -> int:
    """Rewrite one safetensors file with `rename` applied to every key; returns #keys changed."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    changed = sum(rename(k) != k for k in keys)
    if changed:
        tensors = load_file(str(path))
        new = {rename(k): v for k, v in tensors.items()}
        if len(new) != len(tensors):
            raise ValueError(f"{path}: renaming the keys to the transformers-4 spelling makes two of them collide")
        atomic_save_safetensors(new, path, metadata=meta or {"format": "pt"})
    return changed


def portable_weights(folder: Path, stem: str = "model") -> int:
    """v4 key names in every weight file of `folder` (and its index); returns #keys renamed."""
    files = _weight_files(folder, stem)
    if not files:
        raise FileNotFoundError(f"{folder}: no {stem}.safetensors or {stem}.safetensors.index.json")
    changed = sum(rename_safetensors(p, v4_key) for p in files)
    index = folder / f"{stem}.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text())
        data["weight_map"] = {v4_key(k): v for k, v in data["weight_map"].items()}
        atomic_write_json(index, data)
    return changed


# ---------------------------------------------------------------------------- tokenizer + config
def portable_tokenizer_config(cfg: dict[str, Any], tokenizer_class: str | None = None) -> dict[str, Any]:
    """tokenizer_config.json fields that v4 reads as v5 meant them (tokenizer.json stays authoritative)."""
    out = dict(cfg)
    if out.get("tokenizer_class") in (None, "TokenizersBackend"):
        out["tokenizer_class"] = tokenizer_class or TOKENIZER_FALLBACK
    out.pop("add_prefix_space", None)  # v4 LlamaTokenizerFast: not None => rebuild from a sentencepiece file
    extra = out.get("extra_special_tokens")
    if not isinstance(extra, dict):
        named = {k: out.pop(k) for k in NAMED_SPECIAL if isinstance(out.get(k), str)}
        if extra:
            out["additional_special_tokens"] = list(extra)
        out["extra_special_tokens"] = named
    return out


def portable_model_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """config.json with the v4 RoPE fields next to v5's ``rope_parameters`` (top level and sub-configs)."""
    out = dict(cfg)
    rope = out.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope:
        out.setdefault("rope_theta", rope["rope_theta"])
        if rope.get("rope_type", "default") != "default":
            out.setdefault("rope_scaling", {k: v for k, v in rope.items() if k != "rope_theta"})
    for key, val in cfg.items():
        if key.endswith("_config") and isinstance(val, dict):
            out[key] = portable_model_config(val)
    return out


def _rewrite_json(path: Path, fn) -> bool:
    if not path.is_file():
        return False
    old = json.loads(path.read_text())
    new = fn(old)
    if new != old:
        atomic_write_json(path, new)
    return new != old


# v5 image processors whose default (torchvision) backend is what transformers 4.57 calls `<name>Fast`.
# Naming the Fast class makes 4.57 resize with torchvision too (its slow class resizes with PIL: pixels
# differ by up to 0.015 on a non-square photo); v5 reads `<name>Fast` as `<name>` with the torchvision
# backend. Pixels then agree exactly (tests/release/test_portable.py).
V4_FAST_IMAGE_PROCESSORS = ("CLIPImageProcessor", "LlavaNextImageProcessor")


def portable_image_processor(cfg: dict[str, Any], torchvision: bool) -> dict[str, Any]:
    """An image-processor dict naming the v4 class that resizes like the running v5 one.

    `torchvision`: whether v5 resolved the torchvision backend here (it falls back to PIL without it; then
    the slow v4 class is the match and nothing changes)."""
    name = cfg.get("image_processor_type")
    if not torchvision or name not in V4_FAST_IMAGE_PROCESSORS:
        return cfg
    return {**cfg, "image_processor_type": f"{name}Fast"}


def _portable_processor_file(cfg: dict[str, Any], torchvision: bool) -> dict[str, Any]:
    if isinstance(cfg.get("image_processor"), dict):  # processor_config.json (v5): nested
        return {**cfg, "image_processor": portable_image_processor(cfg["image_processor"], torchvision)}
    return portable_image_processor(cfg, torchvision)  # preprocessor_config.json: flat


def make_image_processor_portable(folder: str | Path) -> bool:
    """processor_config.json / preprocessor_config.json of `folder` made to resize alike under v4 and v5."""
    from transformers.utils import is_torchvision_available

    tv = is_torchvision_available()
    changed = [
        _rewrite_json(Path(folder) / name, lambda c: _portable_processor_file(c, tv))
        for name in ("processor_config.json", "preprocessor_config.json")
    ]
    return any(changed)


def make_portable(folder: str | Path, tokenizer_class: str | None = None) -> dict[str, Any]:
    """Rewrite a ``save_pretrained`` model (+ processor) folder in place; returns what changed.

    `tokenizer_class`: what to write where v5 wrote ``TokenizersBackend`` (pass the base's own
    ``tokenizer_class``; default ``PreTrainedTokenizerFast``). The tokenization is checked to be
    unchanged under the running transformers.
    """
    folder = Path(folder)
    return {
        "renamed_keys": portable_weights(folder),
        "config": _rewrite_json(folder / "config.json", portable_model_config),
        "tokenizer_config": make_tokenizer_portable(folder, tokenizer_class),
        "image_processor": make_image_processor_portable(folder),
    }


def make_tokenizer_portable(folder: str | Path, tokenizer_class: str | None = None) -> bool:
    """tokenizer_config.json of `folder` made v4-readable, keeping the token ids (True if changed).

    Tries the full rewrite first; when dropping ``add_prefix_space`` would change what the running
    transformers tokenizes, keeps it and names ``PreTrainedTokenizerFast`` (tokenizer.json as is)
    instead. A rewrite that changes the ids is never kept.
    """
    folder = Path(folder)
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return False
    original = json.loads(path.read_text())
    before = _probe_tokenizer(folder)
    full = portable_tokenizer_config(original, tokenizer_class)
    keep = {**portable_tokenizer_config(original, TOKENIZER_FALLBACK), "tokenizer_class": TOKENIZER_FALLBACK}
    # v4's PreTrainedTokenizerFast defaults to also returning token_type_ids, which LLaVA's generate()
    # refuses ("model_kwargs not used"); name the inputs the running tokenizer returns.
    keep.setdefault("model_input_names", _model_input_names(folder))
    if "add_prefix_space" in original:
        keep["add_prefix_space"] = original["add_prefix_space"]
    for candidate in (full, keep):
        if candidate == original:
            return False
        atomic_write_json(path, candidate)
        if _probe_tokenizer(folder) == before:
            return True
    atomic_write_json(path, original)  # transformers 5 keeps working; a v4 load of this tokenizer may not
    logger.warning("%s: no transformers-4 readable tokenizer_config.json keeps the token ids; left unchanged", folder)
    return False


PROBE_TEXTS = ("USER: <image>\nWhat color is the circle? ASSISTANT: Red.", "a photo of 3 dogs, 12 cats")


def _probe_tokenizer(folder: Path) -> list[list[int]] | None:
    if not (folder / "tokenizer_config.json").is_file():
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    return [tok(t)["input_ids"] for t in PROBE_TEXTS]


def _model_input_names(folder: Path) -> list[str]:
    from transformers import AutoTokenizer

    return list(AutoTokenizer.from_pretrained(str(folder)).model_input_names)


def base_tokenizer_class(base: str | Path) -> str | None:
    """``tokenizer_class`` of a base folder's tokenizer_config.json (None if absent or v5-only)."""
    cfg = Path(base) / "tokenizer_config.json"
    name = json.loads(cfg.read_text()).get("tokenizer_class") if cfg.is_file() else None
    return None if name == "TokenizersBackend" else name


# ---------------------------------------------------------------------------- PEFT adapters
def portable_targets(target_modules: Any) -> Any:
    """``target_modules`` that select the same modules on a v4 and a v5 model."""
    if isinstance(target_modules, str):
        return both_versions_regex(target_modules)
    if not isinstance(target_modules, (list, tuple, set)):
        return target_modules
    names = sorted(target_modules)
    escaped = [both_versions_regex(re.escape(n)) for n in names]
    if escaped == [re.escape(n) for n in names]:
        return names  # no tower module: PEFT's suffix matching is spelling-independent already
    # PEFT matches a list entry t when `key == t or key.endswith("." + t)`: the same as this fullmatch.
    return r"(?:.*\.)?(?:" + "|".join(escaped) + ")"


def portable_adapter_config(cfg: dict[str, Any]) -> dict[str, Any]:
    out = dict(cfg)
    out["target_modules"] = portable_targets(cfg.get("target_modules"))
    for key in ("rank_pattern", "alpha_pattern"):
        if isinstance(cfg.get(key), dict):
            out[key] = {both_versions_regex(k): v for k, v in cfg[key].items()}
    return out


def make_adapter_portable(folder: str | Path) -> dict[str, Any]:
    """Rewrite a PEFT adapter folder in place (v4 weight keys, both-spelling target regexes)."""
    folder = Path(folder)
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{folder}: no adapter_model.safetensors")
    return {
        "renamed_keys": rename_safetensors(weights, v4_key),
        "config": _rewrite_json(folder / "adapter_config.json", portable_adapter_config),
    }
