"""JSON input that fails clearly: encodings, byte order marks, nesting depth, positions.

Why one module: every reader (dataset, converters, scorers, adapter/run configs) must treat the
same hostile inputs the same way:
- a UTF-8 byte order mark is accepted (skipped), so positions stay those an editor shows;
- UTF-16 / UTF-32 files are refused with what they are and how to fix it (not "invalid char");
- nesting deeper than ``MAX_DEPTH`` is refused before a parser sees it: ijson's memory grows with
  the square of the depth (20k levels took 1 GB), Python's json raises RecursionError;
- malformed JSON names the file, line and column.
Streaming readers wrap their binary file with ``open_json_stream`` (BOM check + depth guard in C-speed
chunk scans); whole-file readers use ``read_json``.
"""

from __future__ import annotations

import codecs
import functools
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from .errors import UserError

MAX_DEPTH = 64  # LLaVA records nest 4 levels, official COCO / VQAv2 / GQA files at most 6
_UTF8_BOM = codecs.BOM_UTF8
_WIDE = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
_ESCAPE = re.compile(rb"\\.", re.S)


@functools.lru_cache(maxsize=1)
def _step_table() -> Any:
    """Byte -> depth change: +1 for [ and {, -1 for ] and }, 0 otherwise."""
    import numpy as np

    table = np.zeros(256, dtype=np.int8)
    table[[0x5B, 0x7B]], table[[0x5D, 0x7D]] = 1, -1
    return table


class JsonInputError(UserError):
    """A JSON file that cannot be read as UTF-8 JSON (names the file and the position)."""


def bom_skip(head: bytes, path: str | os.PathLike) -> int:
    """Bytes to skip at the start (3 for a UTF-8 BOM); JsonInputError for UTF-16/32 text."""
    if head.startswith(_UTF8_BOM):
        return len(_UTF8_BOM)
    for bom, name in _WIDE:
        if head.startswith(bom):
            raise JsonInputError(f"{path}: the file is {name} text (byte order mark at byte 0); re-save it as UTF-8")
    if len(head) >= 2 and (head[0] == 0 or head[1] == 0):
        raise JsonInputError(
            f"{path}: the file looks like UTF-16/UTF-32 text (NUL byte at byte "
            f"{0 if head[0] == 0 else 1}); re-save it as UTF-8"
        )
    return 0


class DepthGuard:
    """Binary reader that refuses JSON nested deeper than `max_depth` (brackets inside strings ignored)."""

    def __init__(self, raw: BinaryIO, path: str | os.PathLike, max_depth: int = MAX_DEPTH) -> None:
        self.raw, self.path, self.max_depth = raw, path, max_depth
        self.depth, self.in_string, self.offset = 0, False, 0
        self._pending = b""  # a trailing backslash whose escaped byte is in the next chunk

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self._scan(data)
        self.offset += len(data)
        return data

    def tell(self) -> int:
        return self.raw.tell()

    def _scan(self, data: bytes) -> None:
        import numpy as np

        buf = self._pending + data
        tail = len(buf) - len(buf.rstrip(b"\\"))
        self._pending = b"\\" if tail % 2 else b""
        buf = buf[: len(buf) - (tail % 2)]
        if b"\\\\" in buf or b'\\"' in buf:  # only \\ and \" change where strings end
            buf = _ESCAPE.sub(b"", buf)
        arr = np.frombuffer(buf, dtype=np.uint8)
        inside = (np.cumsum(arr == 0x22, dtype=np.int32) + int(self.in_string)) & 1 == 1  # quotes step 0 anyway
        step = _step_table()[arr]
        step[inside] = 0
        if arr.size:
            self.in_string = bool(inside[-1])
            depth = self.depth + np.cumsum(step, dtype=np.int32)
            peak = int(depth.max())
            if peak > self.max_depth:
                raise JsonInputError(
                    f"{self.path}: JSON nested deeper than {self.max_depth} levels (near byte "
                    f"{self.offset + int(np.argmax(depth > self.max_depth))}); no LLaVA or "
                    "official COCO/VQA/GQA file does that"
                )
            self.depth = int(depth[-1])


@contextmanager
def open_json_stream(path: str | os.PathLike, max_depth: int = MAX_DEPTH) -> Iterator[DepthGuard]:
    """The file for a streaming parser: UTF-8 BOM skipped, UTF-16/32 refused, depth guarded."""
    with open(path, "rb") as f:
        f.seek(bom_skip(f.read(4), path))
        yield DepthGuard(f, path, max_depth)


def read_adapter_config(path: str | os.PathLike) -> dict:
    """A PEFT adapter_config.json, or JsonInputError naming it (PEFT's own errors name no file)."""
    cfg = read_json(path, "adapter config")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("peft_type", "LORA"), str):
        raise JsonInputError(
            f"adapter config {path}: expected a JSON object with a 'peft_type' string, got {str(cfg)[:120]}"
        )
    return cfg


def read_json(path: str | os.PathLike, what: str = "JSON") -> Any:
    """Parse a whole (small) JSON file; JsonInputError names the file, line and column."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise JsonInputError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise JsonInputError(f"{what} file {path} is a directory") from None
    skip = bom_skip(data[:4], path)
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: skip + e.start].count(b"\n") + 1
        raise JsonInputError(
            f"{what} file {path} is not UTF-8 text: byte {data[skip + e.start :][:1]!r} at offset "
            f"{skip + e.start} (line {line}); re-save it as UTF-8"
        ) from None
    guard = DepthGuard(None, path)  # type: ignore[arg-type]
    guard._scan(data[skip:])
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise JsonInputError(
            f"{what} file {path} is not valid JSON: line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    except RecursionError:
        raise JsonInputError(f"{what} file {path}: JSON nested too deeply to parse") from None
