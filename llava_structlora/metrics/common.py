"""Shared pieces of the scorers: JSON loading with clear errors and result/reference id matching.

The official tools assert that the results cover exactly the reference ids; we keep that as the
default (with an error that says which ids are wrong) and offer `allow_partial` to score the
intersection, reporting how many ids were left out and why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class MetricInputError(ValueError):
    """Bad scorer input (malformed file, wrong ids); the message names the file and record."""


def load_json(path: str | Path, what: str) -> Any:
    """json.load with an error that names the file and what it should have been."""
    from llava_structlora.utils.jsonio import JsonInputError, read_json

    path = Path(path)
    if not path.is_file():
        raise MetricInputError(f"{what} file not found: {path}")
    try:
        return read_json(path, what)  # BOM accepted; UTF-16, deep nesting: named errors
    except JsonInputError as e:
        raise MetricInputError(str(e)) from None


def check_id(value: Any, where: str, key: str) -> Any:
    """An id the scorers can match: a string or an integer (a list, an object or a float never is)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise MetricInputError(f"{where}: {key!r} must be a string or an integer id, got {str(value)[:80]}")
    return value


def load_results(path: str | Path, id_key: str, value_key: str) -> list[tuple[Any, str]]:
    """Read an official results list `[{id_key: .., value_key: str}, ...]` as (id, value) pairs."""
    data = load_json(path, "results")
    if not isinstance(data, list):
        raise MetricInputError(
            f"results file {path}: expected a JSON list of "
            f"{{{id_key!r}, {value_key!r}}} objects, got {type(data).__name__}"
        )
    pairs = []
    for i, rec in enumerate(data):
        if not isinstance(rec, dict) or id_key not in rec or value_key not in rec:
            raise MetricInputError(
                f"results file {path}, record {i}: expected an object with "
                f"{id_key!r} and {value_key!r}, got {str(rec)[:200]}"
            )
        if not isinstance(rec[value_key], str):
            raise MetricInputError(
                f"results file {path}, record {i} ({id_key}={rec[id_key]!r}): "
                f"{value_key!r} must be a string, got {type(rec[value_key]).__name__}"
            )
        pairs.append((check_id(rec[id_key], f"results file {path}, record {i}", id_key), rec[value_key]))
    return pairs


@dataclass
class IdMatch:
    """Outcome of matching result ids against reference ids."""

    results: dict[Hashable, str]
    ids: list[Hashable]  # ids to score, in reference order
    missing: list[Hashable] = field(default_factory=list)
    unknown: list[Hashable] = field(default_factory=list)
    duplicate: list[Hashable] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"n_missing": len(self.missing), "n_unknown": len(self.unknown), "n_duplicate": len(self.duplicate)}


def _preview(ids: list, k: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:k])
    return f"{shown}{', ...' if len(ids) > k else ''}"


def match_ids(
    pairs: Iterable[tuple[Hashable, str]],
    reference_ids: Iterable[Hashable],
    results_path: str | Path,
    allow_partial: bool = False,
) -> IdMatch:
    """Check that results name every reference id exactly once.

    Default: any missing, unknown or duplicated id is an error listing a few of them.
    `allow_partial`: score reference ids answered exactly once; duplicated ids are not scored
    (which answer would count is ambiguous) and every exclusion is counted.
    """
    pairs = list(pairs)
    ref = list(reference_ids)
    ref_set = set(ref)
    counts = Counter(k for k, _ in pairs)
    duplicate = sorted((k for k, c in counts.items() if c > 1), key=str)
    unknown = sorted((k for k in counts if k not in ref_set), key=str)
    missing = [k for k in ref if k not in counts]
    if not allow_partial and (duplicate or unknown or missing):
        problems = []
        if missing:
            problems.append(f"{len(missing)} reference ids have no result (e.g. {_preview(missing)})")
        if unknown:
            problems.append(f"{len(unknown)} result ids are not in the references (e.g. {_preview(unknown)})")
        if duplicate:
            problems.append(f"{len(duplicate)} ids appear more than once (e.g. {_preview(duplicate)})")
        raise MetricInputError(
            f"results file {results_path}: "
            + "; ".join(problems)
            + ". Fix the results or pass --allow-partial to score the intersection."
        )
    dup_set = set(duplicate)
    results = {k: v for k, v in pairs if k in ref_set and k not in dup_set}
    ids = [k for k in ref if k in results]
    return IdMatch(results=results, ids=ids, missing=missing, unknown=unknown, duplicate=duplicate)
