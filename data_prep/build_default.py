"""Build the embedded default dataset: shapes world -> official files -> the official converters.

    python -m data_prep.build_default --root DATA_ROOT --preset default|smoke [--seed 0] [--force]

DATA_ROOT afterwards (docs/ARCHITECTURE.md, docs/shapes_world.md):
  raw/                 official-format files written by data_prep.shapes_world
  coco/ vqav2/ gqa/    LLaVA files from data_prep.coco / vqav2 / gqa, exactly as for real data
  pretrain_captions/   data_prep.coco on raw/pretrain (pretraining-style captions; val = eval)
  pretrain_vqa/        data_prep.vqav2 on raw/pretrain (pretraining-style questions; val = eval)
  pretrain/            llava_train.json = both of the above, shuffled; val_* = pretrain_vqa's val
                       with "category" (question family) on each question line
  build_stamp.json     hash of (preset, seed, generator version, data_prep sources)

Cached: a rerun whose stamp hash matches returns at once. Safe if interrupted: everything is
built in a temp dir beside DATA_ROOT and renamed into place; a lock file serializes builds.
The converters run with strict=True: our own data must never be skipped.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import random
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from data_prep.coco import convert_coco
from data_prep.gqa import convert_gqa
from data_prep.shapes_preset import PRESETS, ShapesPreset, preset_fingerprint, resolve_preset
from data_prep.shapes_world import generate
from data_prep.shapes_writer import write_world
from data_prep.vqav2 import convert_vqav2
from llava_structlora.utils.errors import run_main
from llava_structlora.utils.io import atomic_directory, atomic_write_json, check_rebuildable, hash_jsonable

STAMP = "build_stamp.json"


def source_digest() -> str:
    """Digest of the data_prep sources: a code change rebuilds the cached data."""
    h = hashlib.sha256()
    for p in sorted(Path(__file__).parent.glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def build_key(preset: ShapesPreset, seed: int) -> dict[str, Any]:
    fp = {**preset_fingerprint(preset, seed), "sources": source_digest()}
    return {"hash": hash_jsonable(fp), "fingerprint": fp}


def read_stamp(root: Path) -> dict | None:
    try:
        return json.loads((root / STAMP).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


@contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """Serialize concurrent builds of the same DATA_ROOT (a second one then finds the stamp)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def convert_all(d: Path) -> dict[str, dict]:
    """Run the official converters on d/raw exactly as a user would on the real files."""
    raw, strict = d / "raw", {"strict": True}
    ann = raw / "coco" / "annotations"
    vq = raw / "vqav2"
    pre = raw / "pretrain"
    m = {
        "coco": convert_coco(
            [ann / "captions_train2014.json", ann / "captions_val2014.json"],
            karpathy=str(raw / "coco" / "dataset_coco.json"),
            images=str(raw / "images"),
            out=str(d / "coco"),
            **strict,
        ),
        "vqav2": convert_vqav2(
            [vq / f"v2_OpenEnded_mscoco_{s}_questions.json" for s in ("train2014", "val2014", "test-dev2015")],
            [vq / f"v2_mscoco_{s}_annotations.json" for s in ("train2014", "val2014")],
            images=str(raw / "images"),
            out=str(d / "vqav2"),
            **strict,
        ),
        "gqa": convert_gqa(
            [raw / "gqa" / f"{s}_balanced_questions.json" for s in ("train", "val", "testdev")],
            images=str(raw / "gqa" / "images"),
            out=str(d / "gqa"),
            **strict,
        ),
        "pretrain_captions": convert_coco(
            [pre / "captions_train2014.json", pre / "captions_val2014.json"],
            images=str(pre / "images"),
            out=str(d / "pretrain_captions"),
            **strict,
        ),
        "pretrain_vqa": convert_vqav2(
            [pre / f"v2_OpenEnded_mscoco_{s}_questions.json" for s in ("train2014", "val2014")],
            [pre / f"v2_mscoco_{s}_annotations.json" for s in ("train2014", "val2014")],
            images=str(pre / "images"),
            out=str(d / "pretrain_vqa"),
            **strict,
        ),
    }
    return m


def merge_pretrain(d: Path, seed: int) -> dict:
    """d/pretrain: captions + QA training records (shuffled, ids prefixed) and the QA val set."""
    cap, vqa, out = d / "pretrain_captions", d / "pretrain_vqa", d / "pretrain"
    mc, mv = (json.loads((p / "manifest.json").read_text()) for p in (cap, vqa))
    if mc["image_folder"] != mv["image_folder"]:
        raise RuntimeError(f"pretrain image folders differ: {mc['image_folder']} vs {mv['image_folder']}")
    records = []
    for prefix, part in (("cap", cap), ("vqa", vqa)):
        for r in json.loads((part / "llava_train.json").read_text()):
            records.append({**r, "id": f"{prefix}-{r['id']}"})
    random.Random(f"pretrain-merge:{seed}").shuffle(records)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "llava_train.json", records, indent=None)
    family = json.loads((d / "raw" / "shapes_meta.json").read_text())["question_family"]
    lines = []
    for line in (vqa / "val_questions.jsonl").read_text().splitlines():
        q = json.loads(line)
        lines.append(json.dumps({**q, "category": family[str(q["question_id"])]}))
    (out / "val_questions.jsonl").write_text("\n".join(lines) + "\n")
    for name in ("val_questions.json", "val_annotations.json"):
        shutil.copyfile(vqa / name, out / name)
    manifest = {
        "task": "pretrain",
        "image_folder": mv["image_folder"],
        "counts": {"train": len(records), "val": len(lines)},
        "skipped": {"train": 0, "val": 0},
        "reasons": {"train": {}, "val": {}},
        "parts": {"captions": "../pretrain_captions", "vqa": "../pretrain_vqa"},
        "train_records": {"captions": mc["counts"]["train"], "vqa": mv["counts"]["train"]},
    }
    (out / "image_folder.txt").write_text(mv["image_folder"] + "\n")
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


def _retarget(obj: Any, old: str, new: str) -> Any:
    """Replace the temp build dir in absolute paths recorded by the converters."""
    if isinstance(obj, str):
        return obj.replace(old, new)
    if isinstance(obj, list):
        return [_retarget(x, old, new) for x in obj]
    if isinstance(obj, dict):
        return {k: _retarget(v, old, new) for k, v in obj.items()}
    return obj


def fix_manifests(tmp: Path, final: Path) -> None:
    for p in tmp.glob("*/manifest.json"):
        m = json.loads(p.read_text())
        atomic_write_json(p, _retarget(m, str(tmp.resolve()), str(final.resolve())))


def build_default(root: str | Path, preset: str | ShapesPreset = "default", seed: int = 0, force: bool = False) -> dict:
    """Build (or find cached) DATA_ROOT; returns the stamp. `preset` may be a ShapesPreset."""
    root = Path(root)
    p = preset if isinstance(preset, ShapesPreset) else resolve_preset(preset)
    key = build_key(p, seed)
    with build_lock(root):
        stamp = read_stamp(root)
        if not force and stamp is not None and stamp.get("hash") == key["hash"]:
            return {**stamp, "cached": True}
        check_rebuildable(root, STAMP, "data root")  # never wipe a folder that is not ours
        t0 = time.perf_counter()
        with atomic_directory(root) as tmp:
            tmp.chmod(0o755)  # mkdtemp makes it 0700
            items = generate(p, seed)
            write_world(items, p, seed, tmp)
            manifests = convert_all(tmp)
            manifests["pretrain"] = merge_pretrain(tmp, seed)
            fix_manifests(tmp, root)
            stamp = {
                **key,
                "preset_name": p.name,
                "seconds": round(time.perf_counter() - t0, 2),
                "counts": {t: m["counts"] for t, m in manifests.items()},
            }
            atomic_write_json(tmp / STAMP, stamp)
    return {**stamp, "cached": False}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, type=Path, help="DATA_ROOT, e.g. artifacts/data/default")
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="rebuild even when the stamp matches")
    args = ap.parse_args(argv)
    stamp = build_default(args.root, args.preset, args.seed, args.force)
    state = "cached" if stamp["cached"] else f"built in {stamp['seconds']} s"
    print(f"[build_default] {args.root} ({args.preset}, seed {args.seed}): {state}; counts {stamp['counts']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, None, "build_default"))
