"""Shared machinery of the official-format converters (coco, vqav2, gqa).

Why it exists: the three converters must agree on how they stream big official files,
sample low-data subsets, check images, report bad input and describe their outputs, so
that the dataset and the scorers downstream can rely on one contract (docs/data.md).

- Streaming JSON reads and writes (ijson; malformed JSON is a `ConvertError` naming the file and
  the position): `data_prep/jsonstream.py`, re-exported here.
- `SkipLog`: counted, logged skips with reasons and first examples; `strict` turns them
  into errors. `select_subset`: deterministic, nested fraction/limit sampling.
- `write_manifest`: `DATA_ROOT/<task>/manifest.json`, merged per split across runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.jsonstream import (  # noqa: F401 - the public path of the JSON helpers (tests, converters)
    ConvertError,
    JsonStreamWriter,
    field,
    iter_json,
    jsonl_line,
    read_header,
    require_array,
    require_object,
)
from llava_structlora.utils.errors import note_output, run_main
from llava_structlora.utils.io import atomic_open, atomic_write_json, atomic_write_text  # noqa: F401 - the converters import atomic_open from here
from llava_structlora.utils.locks import output_lock
from llava_structlora.utils.publish import Owner, is_staging, link_or_copy, staged_directory, target_of

logger = logging.getLogger("data_prep")

CAPTION_PROMPT = "Provide a one-sentence caption for the provided image."
SHORT_ANSWER_PROMPT = "Answer the question using a single word or phrase."
CHECK_MODES = ("none", "exists", "full")
MANIFEST_VERSION = 1


# ----------------------------------------------------------------------------- records
def llava_record(rec_id: str, image: str, question: str, answer: str) -> dict:
    """One LLaVA instruction record (image token first, as LLaVA-1.5's mixes)."""
    return {
        "id": rec_id,
        "image": image,
        "conversations": [{"from": "human", "value": f"<image>\n{question}"}, {"from": "gpt", "value": answer}],
    }


def eval_question(question_id: Any, image: str, text: str) -> dict:
    """One LLaVA eval question line (no `<image>`: the eval loader inserts it)."""
    return {"question_id": question_id, "image": image, "text": text}


def short_answer_text(question: str) -> str:
    return f"{question}\n{SHORT_ANSWER_PROMPT}"


# ----------------------------------------------------------------------------- images
class ImageChecker:
    """Cached per-image problem lookup: None when usable, else a skip reason."""

    def __init__(self, root: str | os.PathLike, mode: str = "exists") -> None:
        if mode not in CHECK_MODES:
            raise ConvertError(f"--check-images must be one of {CHECK_MODES}, got {mode!r}")
        self.root, self.mode = Path(root), mode
        if not self.root.is_dir():
            raise ConvertError(f"image folder not found: {self.root}")
        self._cache: dict[str, str | None] = {}
        self._dirs: dict[str, bool] = {}

    def in_subdir(self, subdir: str, file_name: str) -> str:
        """`subdir/file_name` when `root/subdir/` exists (root = parent of train2014/ etc.)."""
        if subdir not in self._dirs:
            self._dirs[subdir] = bool(subdir) and (self.root / subdir).is_dir()
        return f"{subdir}/{file_name}" if self._dirs[subdir] else file_name

    def problem(self, rel: str) -> str | None:
        """None when usable; a skip reason otherwise (a path leaving the image root never is)."""
        if leaves_root(rel):
            return "image_path_outside_images"
        if self.mode == "none":
            return None
        if rel not in self._cache:
            self._cache[rel] = self._check(self.root / rel)
        return self._cache[rel]

    def _check(self, path: Path) -> str | None:
        if not path.is_file():
            return "missing_image"
        if self.mode == "full":
            from PIL import Image

            try:
                with Image.open(path) as im:
                    im.verify()
                with Image.open(path) as im:
                    im.load()  # verify() misses truncated data; decoding does not
            except Exception:  # noqa: BLE001 - any decoder failure means unusable
                return "corrupt_image"
        return None


def portable_path(path: str | os.PathLike, out: str | os.PathLike) -> str:
    """`path` relative to the task dir `out` when inside DATA_ROOT (= out's parent), else
    absolute: a DATA_ROOT built in a temp dir and renamed keeps resolving."""
    path, out = Path(path).resolve(), Path(out).resolve()
    if path == out.parent or out.parent in path.parents:
        return os.path.relpath(path, out)
    return str(path)


# ----------------------------------------------------------------------------- skips & sampling
class SkipLog:
    """Counted skips per split and reason, with the first examples; `strict` makes them errors."""

    def __init__(self, strict: bool = False, max_examples: int = 5) -> None:
        self.strict, self.max_examples = strict, max_examples
        self.reasons: dict[str, Counter] = {}
        self.examples: dict[str, dict[str, list[str]]] = {}

    def skip(self, split: str, reason: str, where: str) -> None:
        if self.strict:
            raise ConvertError(f"{where}: {reason} (refused because of --strict)")
        counter = self.reasons.setdefault(split, Counter())
        counter[reason] += 1
        examples = self.examples.setdefault(split, {}).setdefault(reason, [])
        if len(examples) < self.max_examples:
            examples.append(where)
            logger.warning("skip [%s] %s: %s", split, reason, where)

    def total(self, split: str) -> int:
        return sum(self.reasons.get(split, Counter()).values())

    def summary(self, split: str) -> dict[str, Any]:
        return {
            "skipped": self.total(split),
            "reasons": dict(sorted(self.reasons.get(split, Counter()).items())),
            "examples": self.examples.get(split, {}),
        }


def check_sampling(*, limit: int | None = None, fraction: float | None = None, eval_limit: int | None = None) -> None:
    """Validate sampling options up front (before minutes of streaming)."""
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise ConvertError(f"--fraction must be in (0, 1], got {fraction}")
    for name, value in (("--limit", limit), ("--eval-limit", eval_limit)):
        if value is not None and value < 0:
            raise ConvertError(f"{name} must be >= 0, got {value}")


def select_subset(
    keys: Iterable, *, limit: int | None = None, fraction: float | None = None, seed: int = 0
) -> set | None:
    """Keys kept by fraction/limit; None means keep all.

    Deterministic for a given key set and seed, whatever the input order: keys are sorted,
    shuffled with `random.Random(seed)`, and a prefix of round(fraction*n) (>= 1), capped at
    `limit`, is kept. Prefixes of one permutation are nested: 10% ⊂ 25% ⊂ 50% ⊂ 100%.
    """
    check_sampling(limit=limit, fraction=fraction)
    if limit is None and fraction is None:
        return None
    order = sorted(keys)
    random.Random(seed).shuffle(order)
    k = len(order)
    if fraction is not None and order:
        k = max(1, math.floor(fraction * len(order) + 0.5))
    if limit is not None:
        k = min(k, limit)
    return set(order[:k])


@dataclass(frozen=True)
class Sampling:
    """A converter's sampling and checking options, checked on creation (before minutes of streaming).

    The training split is sampled by `fraction`/`limit`, every eval split by `eval_limit` alone; the
    manifest records per split what it was written with.
    """

    limit: int | None = None
    fraction: float | None = None
    eval_limit: int | None = None
    seed: int = 0
    check_images: str = "exists"
    strict: bool = False

    def __post_init__(self) -> None:
        check_sampling(limit=self.limit, fraction=self.fraction, eval_limit=self.eval_limit)

    def keep(self, keys: Sequence, is_train: bool) -> set:
        """The keys one split keeps (all of them when no limit or fraction applies)."""
        chosen = select_subset(
            keys,
            limit=self.limit if is_train else self.eval_limit,
            fraction=self.fraction if is_train else None,
            seed=self.seed,
        )
        return set(keys) if chosen is None else chosen

    def options(self, is_train: bool) -> dict[str, Any]:
        """The manifest's `options` of one split."""
        return {
            "limit": self.limit if is_train else self.eval_limit,
            "fraction": self.fraction if is_train else None,
            "seed": self.seed,
            "check_images": self.check_images,
            "strict": self.strict,
        }


# ----------------------------------------------------------------------------- output dir & image paths
# Files a converter may write into its task dir (a foreign file of one of these names is never replaced).
OUTPUT_PATTERNS = (
    "llava_train.json",
    "manifest.json",
    "image_folder.txt",
    "*_questions.jsonl",
    "*_questions.json",
    "*_annotations.json",
)


def check_task_dir(out: str | os.PathLike, task: str, images: str | os.PathLike | None = None) -> Path:
    """Refuse a task dir that holds another task's output, or our file names written by someone else.

    `out` may be absent, hold no converter file, or be this task's earlier output (its manifest
    says so: splits are merged per split). It may never be the image folder or above it.
    """
    out = Path(out)
    if images is not None and Path(images).exists():
        img, out_r = Path(images).resolve(), out.resolve()
        if out_r == img or out_r in img.parents:
            raise ConvertError(
                f"--out {out}: it {'is' if out_r == img else 'contains'} the image folder "
                f"{images}; write the task dir next to the images (e.g. DATA_ROOT/{task})"
            )
    if not out.is_dir():
        return out
    manifest = out / "manifest.json"
    if manifest.is_file():
        try:
            found = json.loads(manifest.read_text(encoding="utf-8-sig")).get("task")
        except (ValueError, AttributeError):
            found = None
        if found != task:
            raise ConvertError(
                f"--out {out}: it holds {'a ' + repr(found) if found else 'an unreadable'} task's "
                f"output ({manifest}); refusing to replace it with {task!r} output. "
                f"Use --out DATA_ROOT/{task}"
            )
        return out
    foreign = sorted(p.name for pat in OUTPUT_PATTERNS for p in out.glob(pat))
    if foreign:
        raise ConvertError(
            f"--out {out}: {foreign[0]} exists but no manifest.json says a converter wrote it; "
            "refusing to replace it. Use an empty or new --out"
        )
    return out


@contextmanager
def staged_task_dir(out: str | os.PathLike, task: str, images: str | os.PathLike | None = None) -> Iterator[Path]:
    """The task dir to write into: a staging copy of `out`, published by one rename when the block succeeds.

    Why a whole-directory copy: a conversion rewrites several files, and splits converted by earlier
    runs stay (gqa train and testdev are separate calls). The staging dir starts with hard links of
    everything in `out` (no data copied), the run replaces its files there and writes the manifest
    last; the rename makes the new set visible at once. A killed re-conversion therefore never leaves
    new and old files mixed, and its leftovers are removed by the next run (utils.publish). `out` is
    locked for the whole conversion (utils.locks): a second converter into it exits 2.
    """
    out = target_of(out)
    note_output(out, f"{task} conversion output")
    with output_lock(out, f"{task} conversion"):
        check_task_dir(out, task, images)
        with staged_directory(out, locked=True) as stage:
            if out.is_dir():
                for entry in out.iterdir():
                    if not is_staging(entry):
                        link_or_copy(entry, stage / entry.name)
            yield stage


def leaves_root(rel: str) -> bool:
    """True when the relative image path `rel` is empty, absolute or climbs out with '..'."""
    parts = rel.replace("\\", "/").split("/")
    return not rel or rel.startswith(("/", "\\")) or ".." in parts or (len(rel) > 1 and rel[1] == ":") or "\0" in rel


# ----------------------------------------------------------------------------- manifest & CLI
def write_manifest(out: str | os.PathLike, task: str, image_folder: str, splits: dict[str, dict[str, Any]]) -> dict:
    """Write `out/manifest.json` (+ `image_folder.txt`), replacing only the given splits.

    Each split entry holds at least `count`, `skipped`, `reasons` and the `run` that wrote it;
    top-level `counts`, `skipped`, `reasons` are keyed by split. Splits of earlier runs into the
    same dir are kept (gqa train and testdev are converted by separate calls), so they must agree
    on `image_folder`. `out` is the staging dir of `staged_task_dir`: the manifest is its last file.
    """
    out = Path(out)
    path = out / "manifest.json"
    old: dict[str, Any] = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            old = {}
    kept = {s: v for s, v in old.get("splits", {}).items() if s not in splits and old.get("task") == task}
    me = Owner.current()
    run = {"pid": me.pid, "host": socket.gethostname(), "start_ticks": me.start, "time": round(time.time(), 3)}
    splits = {s: {**v, "run": run} for s, v in splits.items()}  # which run wrote each split's files
    if kept and old.get("image_folder") != image_folder:
        raise ConvertError(
            f"{path}: splits {sorted(kept)} were converted with image_folder "
            f"{old.get('image_folder')!r}, this run uses {image_folder!r}; use one image folder "
            f"per task dir or another --out"
        )
    merged = {**kept, **splits}
    manifest = {
        "task": task,
        "format_version": MANIFEST_VERSION,
        "complete": True,  # written last, in the staging dir: the published folder is one run's output
        "run": run,
        "image_folder": image_folder,
        "counts": {s: v["count"] for s, v in merged.items()},
        "skipped": {s: v["skipped"] for s, v in merged.items()},
        "reasons": {s: v["reasons"] for s, v in merged.items()},
        "splits": merged,
    }
    atomic_write_text(out / "image_folder.txt", image_folder + "\n")
    atomic_write_json(path, manifest)
    return manifest


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, help="image folder (see docs/data.md)")
    p.add_argument("--out", required=True, help="task output dir, e.g. DATA_ROOT/<task>")
    p.add_argument(
        "--fraction", type=float, default=None, help="keep this fraction of the TRAINING split (low-data tables)"
    )
    p.add_argument("--limit", type=int, default=None, help="cap on kept training units")
    p.add_argument("--eval-limit", type=int, default=None, help="cap on kept units per eval split")
    p.add_argument("--seed", type=int, default=0, help="sampling seed for --fraction/--limit")
    p.add_argument(
        "--check-images",
        choices=CHECK_MODES,
        default="exists",
        help="none | exists (default) | full (PIL verify + decode every image)",
    )
    p.add_argument("--strict", action="store_true", help="turn every skip into an error")


def common_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "images": args.images,
        "out": args.out,
        "fraction": args.fraction,
        "limit": args.limit,
        "eval_limit": args.eval_limit,
        "seed": args.seed,
        "check_images": args.check_images,
        "strict": args.strict,
    }


def run_cli(fn: Any, kwargs: dict[str, Any]) -> int:
    """Call a converter, print a one-line summary per split; a user error -> its message, exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_main(lambda _: _summary(fn(**kwargs)), None, "convert")


def _summary(manifest: dict) -> int:
    for split in manifest["counts"]:
        print(
            f"{manifest['task']}/{split}: {manifest['counts'][split]} records, "
            f"{manifest['skipped'][split]} skipped {manifest['reasons'][split]}"
        )
    return 0
