"""Checks of the files a run reads back, before anything big is loaded: each error names the file.

Why here and not left to the libraries: safetensors says "HeaderTooLarge" or "MetadataIncompleteBuffer"
without a file name, PEFT falls back to a pickled ``adapter_model.bin`` or raises a size mismatch
traceback, and the HF Trainer resumes with a fresh optimizer when ``optimizer.pt`` is missing.
Everything here reads headers and small JSON files only (no tensor data).
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
from pathlib import Path
from typing import Any

from .errors import UserError
from .jsonio import read_adapter_config, read_json

logger = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLED_ADAPTER = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth")
FRESH_OPTIMIZER_ENV = "LLAVA_SL_RESUME_FRESH_OPTIMIZER"
_MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header


class ArtifactError(UserError):
    """A weights / config / state file that cannot be what it claims to be (names the file)."""


def _pickle_magic(head: bytes) -> str | None:
    if head.startswith(b"PK\x03\x04"):
        return "a PyTorch zip pickle (torch.save)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle"
    return None


def safetensors_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a safetensors file, after checking the file is whole; ArtifactError names it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ArtifactError(f"{path}: not a safetensors file ({size} bytes; a truncated download?)")
            # a safetensors header length of 640 + 256 k bytes also starts with b"\x80\x02": the JSON header that
            # follows ("{") tells it from a pickle
            if (kind := _pickle_magic(head)) and f.read(1) != b"{":
                raise ArtifactError(
                    f"{path}: not a safetensors file but {kind}; refusing to load it (unpickling can run code). "
                    "Re-export the weights as safetensors"
                )
            f.seek(8)
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or n + 8 > size:
                raise ArtifactError(
                    f"{path}: not a safetensors file, or truncated: its header claims {n} bytes, the file has "
                    f"{size}; re-download or re-export it"
                )
            raw = f.read(n)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: file not found") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ArtifactError(f"{path}: not a safetensors file (its header is not JSON); re-download it") from None
    if not isinstance(header, dict):
        raise ArtifactError(f"{path}: not a safetensors file (its header is not a JSON object)")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise ArtifactError(f"{path}: tensor {name!r} has no valid data_offsets in the header (garbled file)")
        end = max(end, offsets[1])
    if 8 + n + end != size:
        raise ArtifactError(
            f"{path}: truncated or garbled: the header describes {end} bytes of tensor data, the file holds "
            f"{size - 8 - n}; re-download or re-export it"
        )
    return header


def tensor_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, from the (checked) header."""
    return {k: tuple(v["shape"]) for k, v in safetensors_header(path).items() if k != "__metadata__"}


def check_model_weights(model_dir: str | os.PathLike) -> list[Path]:
    """Every safetensors shard a save_pretrained dir needs exists and is whole (index first, when sharded)."""
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        data = read_json(index, "weights index")
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise ArtifactError(f"{index}: expected a 'weight_map' object (a truncated or garbled index)")
        shards = [model_dir / name for name in sorted(set(map(str, weight_map.values())))]
        for shard in shards:
            if not shard.is_file():
                raise ArtifactError(f"{shard}: listed in {index.name} but missing (an incomplete copy?)")
    else:
        shards = sorted(model_dir.glob("*.safetensors"))
    for shard in shards:
        safetensors_header(shard)
    return shards


def _rank_for(module: str, cfg: dict[str, Any]) -> Any:
    """The rank PEFT gives `module`: the first rank_pattern key matching its name (PEFT's rule), else r."""
    for key, rank in (cfg.get("rank_pattern") or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return rank
    return cfg.get("r")


def check_adapter_dir(adapter_dir: str | os.PathLike) -> dict[str, Any]:
    """A PEFT adapter dir that stock PEFT will load as it says: safetensors weights, whole, ranks as configured.

    Refuses a pickled ``adapter_model.bin`` (PEFT would unpickle it), a garbled or truncated
    ``adapter_model.safetensors``, and an ``adapter_config.json`` whose rank disagrees with the tensors
    (an edited config). Returns the parsed config.
    """
    adapter_dir = Path(adapter_dir)
    cfg = read_adapter_config(adapter_dir / "adapter_config.json")
    weights = adapter_dir / ADAPTER_WEIGHTS
    if not weights.is_file():
        pickled = [n for n in PICKLED_ADAPTER if (adapter_dir / n).is_file()]
        if pickled:
            raise ArtifactError(
                f"{adapter_dir / pickled[0]}: refusing to load a pickled adapter (unpickling a file can run code); "
                f"only {ADAPTER_WEIGHTS} is read. Convert it where you trust it: "
                "safetensors.torch.save_file(torch.load(path, weights_only=True), 'adapter_model.safetensors')"
            )
        raise FileNotFoundError(f"{adapter_dir}: adapter_config.json present but {ADAPTER_WEIGHTS} missing")
    shapes = tensor_shapes(weights)
    if str(cfg.get("peft_type", "LORA")).upper() == "LORA":
        for key, shape in sorted(shapes.items()):
            m = re.match(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_A(?:\.[A-Za-z_]+)?\.weight$", key)
            want = _rank_for(m["module"], cfg) if m else None
            if m and isinstance(want, int) and shape[0] != want:
                raise ArtifactError(
                    f"{adapter_dir / 'adapter_config.json'}: says rank {want} for {m['module']}, but {weights.name} "
                    f"holds rank {shape[0]} ({key}: {list(shape)}); the config was edited or belongs to another "
                    "adapter: restore the config the adapter was saved with"
                )
    return cfg


def _has_optimizer_state(ckpt: Path) -> bool:
    if (ckpt / "optimizer.pt").is_file() or (ckpt / "optimizer.bin").is_file():
        return True
    return any(p.is_file() for p in ckpt.glob("global_step*/*optim_states.pt"))  # DeepSpeed (one per rank)


def check_checkpoint_state(ckpt: str | os.PathLike) -> None:
    """A Trainer checkpoint that resumes the run it claims: trainer_state.json whole, optimizer and scheduler there.

    The HF Trainer silently starts a fresh optimizer and schedule when their files are missing; that is
    only done with the explicit opt-in ``LLAVA_SL_RESUME_FRESH_OPTIMIZER=1`` (logged).
    """
    ckpt = Path(ckpt)
    state = read_json(ckpt / "trainer_state.json", "trainer state")
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        raise ArtifactError(f"{ckpt / 'trainer_state.json'}: expected a JSON object with an integer 'global_step'")
    for weights in sorted(ckpt.glob("*.safetensors")):
        safetensors_header(weights)
    missing = [] if _has_optimizer_state(ckpt) else ["optimizer.pt (or DeepSpeed's global_step*/*optim_states.pt)"]
    if not (ckpt / "scheduler.pt").is_file():
        missing.append("scheduler.pt")
    if not missing:
        return
    if os.environ.get(FRESH_OPTIMIZER_ENV) == "1":
        logger.warning("resuming %s WITHOUT %s (%s=1): fresh state", ckpt, ", ".join(missing), FRESH_OPTIMIZER_ENV)
        return
    raise ArtifactError(
        f"{ckpt}: no {' and no '.join(missing)}; resuming would silently restart the optimizer / learning-rate "
        f"schedule. Resume from another checkpoint, start over (RESUME=none), or accept a fresh optimizer "
        f"explicitly with {FRESH_OPTIMIZER_ENV}=1"
    )
