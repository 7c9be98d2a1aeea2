"""Several training sources mixed with sampling ratios, deterministically and identically on every rank.

    --data_path coco.json,vqav2.json,gqa.json --data_ratios 0.4,0.3,0.3 [--mix_size N]

Semantics: the mixture has ``mix_size`` samples (default: the sum of the sources' record counts) and
source k contributes exactly ``round(ratio_k * mix_size)`` of them (largest-remainder rounding, so
the counts add up). A source asked for fewer samples than it has is subsampled without replacement;
one asked for more is repeated as evenly as possible (every record ``q // n`` times, a random
``q % n`` of them once more). Without ``--data_ratios`` the sources are concatenated (LLaVA's
mix665k practice). Ratios are relative weights (normalized); each must be a positive finite number.

Which records and in what order depends only on (seed, the sources' record counts, ratios,
mix_size): a ``torch.Generator`` seeded with ``seed`` draws it, no rank or global RNG is read, so
every rank builds the same index list and the Trainer's distributed sampler shards it as it shards
a single dataset (tested across processes with different ranks and global seeds).

Why not ``datasets.interleave_datasets``: it picks a random source per example, so ratios hold only
in expectation, and its length is tied to a stopping strategy ("first_exhausted" ends the mixture
when the smallest-quota source runs out, "all_exhausted" grows it to max_k n_k / p_k, e.g. 6.6 M
samples for a 665 k source at p = 0.1; "all_exhausted_without_replacement" uses each record once, so
the shares drift once a source runs out). We want exact per-source counts for a chosen size. The
records themselves stay in ``LazySupervisedDataset`` (streamed, validated, images opened lazily); an
Arrow copy would add an on-disk cache per source for what is index arithmetic on a few integers.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)


class DataMixError(ValueError):
    """A bad ``--data_path`` / ``--data_ratios`` / ``--mix_size`` specification (names the value)."""


@dataclass(frozen=True)
class DataSource:
    path: str
    ratio: float | None  # None: concatenation (no ratios given)


def _split(spec: str, what: str) -> list[str]:
    items = [s.strip() for s in spec.split(",")]
    if not spec.strip() or any(not s for s in items):
        raise DataMixError(f"{what}={spec!r}: expected a comma-separated list without empty entries")
    return items


def parse_sources(data_path: str, data_ratios: str | None = None) -> list[DataSource]:
    """``a.json,b.json`` + ``0.5,0.5`` -> sources with normalized ratios; a bad spec names what is wrong."""
    paths = _split(data_path, "data_path")
    dup = [p for p, c in Counter(paths).items() if c > 1]
    if dup:
        raise DataMixError(f"data_path lists {dup[0]} twice; give a source once and raise its ratio instead")
    if data_ratios is None or not data_ratios.strip():
        return [DataSource(p, None) for p in paths]
    raw = _split(data_ratios, "data_ratios")
    if len(raw) != len(paths):
        raise DataMixError(
            f"data_ratios={data_ratios!r} has {len(raw)} values for {len(paths)} data_path "
            f"entries; give one ratio per source"
        )
    ratios = []
    for path, r in zip(paths, raw):
        try:
            value = float(r)
        except ValueError:
            raise DataMixError(f"data_ratios: {r!r} (for {path}) is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise DataMixError(
                f"data_ratios: {r!r} (for {path}) must be a positive finite number "
                f"(leave a source out of data_path to drop it)"
            )
        ratios.append(value)
    total = sum(ratios)
    return [DataSource(p, r / total) for p, r in zip(paths, ratios)]


def quotas(sizes: Sequence[int], ratios: Sequence[float | None], mix_size: int | None = None) -> list[int]:
    """Samples per source: exact largest-remainder rounding of ratio * mix_size (sizes when no ratios)."""
    if any(n <= 0 for n in sizes):
        raise DataMixError(f"every source needs at least one record, got sizes {list(sizes)}")
    if ratios[0] is None:
        if mix_size is not None:
            ratios = [n / sum(sizes) for n in sizes]
        else:
            return list(sizes)
    total = sum(sizes) if mix_size is None else mix_size
    if total < 1:
        raise DataMixError(f"mix_size={mix_size}: must be a positive number of samples")
    exact = [r * total for r in ratios]
    out = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda k: (-(exact[k] - out[k]), k))
    for k in by_remainder[: total - sum(out)]:
        out[k] += 1
    return out


def mixture_index(sizes: Sequence[int], counts: Sequence[int], seed: int) -> list[tuple[int, int]]:
    """(source, record) pairs of the mixture, shuffled; a function of its arguments only."""
    gen = torch.Generator().manual_seed(seed)
    pairs: list[tuple[int, int]] = []
    for k, (n, q) in enumerate(zip(sizes, counts)):
        reps, rest = divmod(q, n)
        picked = list(range(n)) * reps + torch.randperm(n, generator=gen)[:rest].tolist()
        pairs += [(k, j) for j in sorted(picked)]
    order = torch.randperm(len(pairs), generator=gen).tolist()
    return [pairs[i] for i in order]


class MixedDataset(Dataset):
    """Items of several ``LazySupervisedDataset``s in the order of ``mixture_index``."""

    def __init__(
        self,
        sources: Sequence[Dataset],
        names: Sequence[str],
        ratios: Sequence[float | None],
        seed: int,
        mix_size: int | None = None,
    ):
        self.sources, self.names = list(sources), list(names)
        sizes = [len(s) for s in self.sources]
        self.counts = quotas(sizes, ratios, mix_size)
        self.index = mixture_index(sizes, self.counts, seed)
        self.composition = [
            {"path": name, "ratio": r, "records": n, "samples": q}
            for name, r, n, q in zip(self.names, ratios, sizes, self.counts)
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        k, j = self.index[i]
        return self.sources[k][j]

    @property
    def skipped(self) -> Counter:
        return sum((getattr(s, "skipped", Counter()) for s in self.sources), Counter())

    @property
    def truncated(self) -> int:
        return sum(getattr(s, "truncated", 0) for s in self.sources)


def build_mixture(
    sources: Sequence[DataSource], make: Callable[[str], Dataset], seed: int, mix_size: int | None = None
) -> Dataset:
    """One source: its dataset as is. Several: a ``MixedDataset`` (``make(path)`` builds each source)."""
    if mix_size is not None and mix_size < 1:
        raise DataMixError(f"mix_size={mix_size}: must be a positive number of samples")
    datasets = [make(s.path) for s in sources]
    if len(datasets) == 1 and mix_size is None:
        return datasets[0]
    mixed = MixedDataset(datasets, [s.path for s in sources], [s.ratio for s in sources], seed, mix_size)
    for c in mixed.composition:
        ratio = "concatenated" if c["ratio"] is None else f"ratio {c['ratio']:.3f}"
        logger.info(
            "mix: %s: %d samples from %d records (%s, x%.2f)",
            c["path"],
            c["samples"],
            c["records"],
            ratio,
            c["samples"] / c["records"],
        )
    return mixed
