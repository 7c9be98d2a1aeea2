"""Streaming JSON for the official-format converters: read 330 MB files, write big outputs element by element.

- Reads stream with ijson (never `json.load` of a 330 MB file); malformed JSON is a `ConvertError`
  naming the file and the position; `field` checks one record's field with the same kind of message.
- `JsonStreamWriter` writes a JSON array or object one element at a time, into a file opened with
  `llava_structlora.utils.io.atomic_open` (temp file + fsync + `os.replace`: the streaming
  counterpart of `atomic_write_bytes`, which needs the whole payload in memory).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import ijson

from llava_structlora.utils.jsonio import JsonInputError, open_json_stream, read_json

_EXACT_POSITION_MAX_BYTES = 64 << 20  # re-parse with `json` for an exact line/column below this


class ConvertError(ValueError):
    """Bad input that cannot be skipped meaningfully; the message names file and record."""


# ----------------------------------------------------------------------------- reading JSON
def _malformed(path: Path, f: Any, err: Exception) -> ConvertError:
    """Error naming the file and the position: exact line/column when the file is small
    enough to re-parse with `json`, else the byte offset the streaming parser had reached."""
    where = f"near byte {f.tell()}"
    if path.stat().st_size <= _EXACT_POSITION_MAX_BYTES:
        try:
            read_json(path)
        except JsonInputError as exact:  # names line and column (after a UTF-8 BOM, as an editor shows)
            text = str(exact)
            where = (
                text.split(" is not valid JSON: ", 1)[-1]
                if " is not valid JSON: " in text
                else "not valid utf-8: " + text.split(" is not UTF-8 text: ", 1)[-1]
            )
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ConvertError(f"malformed JSON in {path}: {where} ({detail})")


def iter_json(path: str | os.PathLike, prefix: str, kv: bool = False) -> Iterator[Any]:
    """Stream `ijson.items` (or `kvitems` with kv=True) of `path` at `prefix`."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"input file not found: {path}")
    try:
        with open_json_stream(path) as f:  # BOM skipped, UTF-16 and absurd nesting refused; ijson reads in C
            fn = ijson.kvitems if kv else ijson.items
            try:
                yield from fn(f, prefix, use_float=True)
            except (ijson.JSONError, UnicodeDecodeError) as err:
                raise _malformed(path, f, err) from None
    except JsonInputError as err:
        raise ConvertError(str(err)) from None


def read_header(path: str | os.PathLike, keys: Sequence[str]) -> dict[str, Any]:
    """Top-level values of `keys` present in `path` (one early-stopping C pass per key)."""
    out: dict[str, Any] = {}
    for key in keys:
        for value in iter_json(path, key):
            out[key] = value
            break
    return out


def require_array(path: str | os.PathLike, key: str) -> None:
    """Fail clearly when the top-level array `key` is absent (ijson would just yield nothing)."""
    for value in iter_json(path, key):
        if isinstance(value, list):
            return
        raise ConvertError(f"{path}: top-level '{key}' must be a list, got {type(value).__name__}")
    raise ConvertError(f"{path}: no top-level '{key}' array; is this the right file?")


def require_object(path: str | os.PathLike) -> None:
    """Fail clearly when the top-level JSON value of `path` is not an object."""
    try:
        with open_json_stream(path) as f:
            try:
                for _, event, _ in ijson.parse(f):
                    if event != "start_map":
                        raise ConvertError(
                            f"{path}: top-level JSON value must be an object keyed by question id, got {event}"
                        )
                    return
            except ijson.JSONError as err:
                raise _malformed(Path(path), f, err) from None
    except JsonInputError as err:
        raise ConvertError(str(err)) from None
    raise ConvertError(f"{path}: empty file")


def field(rec: Any, name: str, path: Path | str, where: str, types: tuple = (str,)) -> Any:
    """`rec[name]` with a clear error naming file and record when absent or mistyped."""
    if not isinstance(rec, dict):
        raise ConvertError(f"{path}: {where}: expected a JSON object, got {type(rec).__name__}")
    if name not in rec:
        raise ConvertError(f"{path}: {where}: missing field '{name}'")
    value = rec[name]
    if not isinstance(value, types) or isinstance(value, bool):
        want = "/".join(t.__name__ for t in types)
        raise ConvertError(f"{path}: {where}: field '{name}' must be {want}, got {value!r}")
    return value


# ----------------------------------------------------------------------------- writing JSON
class JsonStreamWriter:
    """Writes `[...]`, `{k: v, ...}` or `{**head, key: [...]}` one element at a time."""

    def __init__(self, f: TextIO, kind: str = "list", head: dict | None = None, key: str | None = None) -> None:
        self.f, self.kind, self.n = f, kind, 0
        if key is not None:
            body = json.dumps(head or {}, ensure_ascii=False)[:-1]
            sep = ", " if head else ""
            f.write(f"{body}{sep}{json.dumps(key)}: [")
            self.close_text = "]}\n"
        else:
            f.write("[" if kind == "list" else "{")
            self.close_text = ("]" if kind == "list" else "}") + "\n"

    def add(self, item: Any, key: str | None = None) -> None:
        text = json.dumps(item, ensure_ascii=False)
        if self.kind == "dict":
            text = f"{json.dumps(str(key))}: {text}"
        self.f.write(("\n" if self.n == 0 else ",\n") + text)
        self.n += 1

    def switch(self, key: str) -> None:
        """Close the current list and open the next top-level list `key` (head+key mode)."""
        self.f.write(("\n" if self.n else "") + f"], {json.dumps(key)}: [")
        self.n = 0

    def close(self) -> None:
        self.f.write(("\n" if self.n else "") + self.close_text)


def jsonl_line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"
