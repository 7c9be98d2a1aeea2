"""Small helpers for outputs written in place and resumed (evaluation dirs, run dirs).

Such a directory is not published by one rename (its shard files are the resume state), so the
rule is: one writer at a time (a lock), and a *stamp* file written last (``metrics.json`` of an
evaluation) that is removed before a new run changes anything, so the directory only looks
complete when every derived file in it comes from the same run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import UserError, note_output
from .jsonio import JsonInputError, read_json
from .locks import HELD_ENV, acquire, hold_for_process, lock_path, output_lock, release


@contextmanager
def locked_output(path: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold `path`'s output lock for the block, and name it in a disk-full error."""
    note_output(path, f"{what} output")
    with output_lock(path, what) as lock:
        yield lock


_CLAIMS: list[Path] = []


def claim_for_process(path: str | os.PathLike, what: str, pass_down: bool = False) -> Path:
    """Hold `path`'s lock until `release_claims` (or the process' exit): a run dir being trained. A second run
    into it, or a merge / release of it, exits 2 naming the lock. `pass_down`: a launcher hands it to the ranks
    it starts."""
    note_output(path, what)
    lock = hold_for_process(path, what) if pass_down else acquire(path, what)
    _CLAIMS.append(Path(path))
    return lock


def release_claims() -> None:
    """Release every claim of this process (the run is over: an in-process caller goes on without it)."""
    while _CLAIMS:
        path = _CLAIMS.pop()
        key = str(lock_path(path))
        held = [p for p in os.environ.get(HELD_ENV, "").split(os.pathsep) if p and p != key]
        if HELD_ENV in os.environ:
            os.environ[HELD_ENV] = os.pathsep.join(held)
        release(path)


def remove_stale(folder: str | os.PathLike, names: Sequence[str]) -> None:
    """Remove a previous run's stamp and derived files (in the given order: the stamp first)."""
    for name in names:
        try:
            (Path(folder) / name).unlink()
        except FileNotFoundError:
            pass


def read_resume_key(path: str | os.PathLike, overwrite: bool) -> Any:
    """The key that says what produced a resumable output; a garbled one is an error naming it
    (or, with `overwrite`, a key that matches nothing, so the old state is discarded)."""
    try:
        key = read_json(path, "resume key")
        if not isinstance(key, dict):
            raise JsonInputError(f"resume key file {path}: expected a JSON object, got {type(key).__name__}")
        return key
    except JsonInputError as e:
        if overwrite:
            return {}
        raise UserError(
            f"{e}. The answers in {Path(path).parent} cannot be matched to the run that wrote them: "
            "pass --overwrite to start over, or use another --output-dir"
        ) from None
