"""What the answers of an evaluation depend on, as short digests: the adapter's *contents* and the base's identity.

Saved answers (and the scores made from them) are keyed by these, not by paths, so that retraining a run in
place (same directory, new weights) can never be scored with the previous weights' answers.

- An adapter (PEFT dir, StructLoRA state, or the run dir that holds them) is hashed by content: its tensors
  and config. Adapters are small (a few MB at 7B), so this costs milliseconds.
- A base or merged full model (GBs) is fingerprinted by its config.json contents and its weight files'
  names, sizes and modification times: hashing 13 GB of weights before every evaluation would cost minutes,
  and any rewrite of a weights file changes its size or mtime.

safetensors writes its header's ``__metadata__`` in an arbitrary order (a Rust hash map: two saves of the same
tensors differ in bytes), so a file's digest covers the parsed header (metadata sorted) and the tensor bytes,
not the raw file: the same weights always give the same digest.

    python -m llava_structlora.evaluation.fingerprint FILE_OR_DIR ...   # prints one digest per argument
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path

from llava_structlora.rundir import ADAPTER_CONFIG, RunDir
from llava_structlora.utils.io import sha256_file
from llava_structlora.utils.jsonio import read_json

_CHUNK = 1 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin")
CONFIG_FILES = (ADAPTER_CONFIG, "structlora_config.json")  # what else in an adapter dir changes the weights


class FingerprintError(ValueError):
    """A weights file that cannot be read as safetensors (the message names it)."""


def safetensors_digest(path: str | Path) -> str:
    """sha256 of a safetensors file's tensors (names, dtypes, shapes, bytes) and its metadata, in a fixed order."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise FingerprintError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
        (n,) = struct.unpack("<Q", raw)
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError, MemoryError, OverflowError) as e:
            raise FingerprintError(f"{path}: garbled safetensors header ({e}); re-export or re-download it") from e
        h = hashlib.sha256(json.dumps(header.pop("__metadata__", {}), sort_keys=True).encode())
        start = 8 + n
        for name in sorted(header):
            info = header[name]
            h.update(json.dumps([name, info["dtype"], info["shape"]]).encode())
            begin, end = info["data_offsets"]
            f.seek(start + begin)
            left = end - begin
            while left > 0:
                block = f.read(min(_CHUNK, left))
                if not block:
                    raise FingerprintError(f"{path}: truncated (tensor {name} ends past the end of the file)")
                h.update(block)
                left -= len(block)
    return h.hexdigest()


def _file_digest(path: Path) -> str:
    return safetensors_digest(path) if path.suffix == ".safetensors" else sha256_file(path, _CHUNK)


def _json_digest(path: Path) -> str:
    """A JSON file by its parsed contents (key order and whitespace do not count). read_json names the file
    of a torn, non-UTF-8 or absurdly nested config (JsonInputError, a user error)."""
    return hashlib.sha256(json.dumps(read_json(path, "config"), sort_keys=True).encode()).hexdigest()


def _combine(parts: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def content_digest(folder: str | Path) -> str:
    """Digest of the weights files and the adapter config directly in `folder` (an adapter or StructLoRA state);
    other files (a README, a release's run.json) do not change what loads."""
    folder = Path(folder)
    parts: dict[str, str] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES:
            parts[p.name] = _file_digest(p)
        elif p.is_file() and p.name in CONFIG_FILES:
            parts[p.name] = _json_digest(p)
    if not parts:
        raise FingerprintError(f"{folder}: no weights or config files to fingerprint")
    return _combine(parts)


def model_fingerprint(folder: str | Path) -> str:
    """A (large) model dir: its config.json contents plus its weight files' names, sizes and mtimes."""
    folder = Path(folder)
    parts = {"config.json": _json_digest(folder / "config.json")} if (folder / "config.json").is_file() else {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name.endswith(".index.json")):
            st = p.stat()
            parts[p.name] = f"{st.st_size}:{st.st_mtime_ns}"
    return _combine(parts)


def adapter_fingerprint(adapter: str | Path | None) -> str | None:
    """Digest of what an evaluation's `adapter` argument loads (None: no adapter).

    A run dir counts as its deliverable: adapter/ (stock PEFT) first, else structlora/, else model/ (as
    evaluation/load.py picks them); a full model dir gets model_fingerprint.
    """
    if adapter is None:
        return None
    path, run = Path(adapter), RunDir(adapter)
    for cand in (path, run.adapter):
        if (cand / ADAPTER_CONFIG).is_file():
            return content_digest(cand)
    if run.structlora.is_dir():
        return content_digest(run.structlora)
    for cand in (run.full_model, path):
        if (cand / "config.json").is_file():
            return model_fingerprint(cand)
    return content_digest(path)  # a bare StructLoRA state dir


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for a in args:
        p = Path(a)
        print(f"{safetensors_digest(p) if p.is_file() else adapter_fingerprint(p)}  {a}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
