"""Validation / test splits for the experiments, as a derived DATA_ROOT the evaluation code reads.

Fair tuning needs a labelled validation split (lr selection) disjoint from the labelled test
split (reported numbers):

- coco:  Karpathy ``val`` -> val, Karpathy ``test`` -> test (as built by data_prep.coco);
- gqa:   balanced ``val`` -> val, balanced ``testdev`` -> test;
- vqav2: the official val2014 questions hold both; ``test-dev`` has no public answers. We split
  them by image with the dataset's own Karpathy split (images of coco/val_* -> val, images of
  coco/test_* -> test), so no image is in both.

The derived files are filtered copies in the official formats (plus the LLaVA question JSONL), so
the real evaluation code (llava_structlora.evaluation) and official-rule scorers run unchanged.
``val_limit`` / ``test_limit`` keep the first N questions (whole images for captions).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from llava_structlora.utils.io import atomic_write_json, atomic_write_text

SOURCE_SPLIT = {
    "coco": {"val": "val", "test": "test"},
    "gqa": {"val": "val", "test": "testdev"},
    "vqav2": {"val": "val", "test": "val"},
}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def _coco_image_ids(src: Path, split: str) -> set[int]:
    data = json.loads((src / "coco" / f"{split}_annotations.json").read_text())
    return {a["image_id"] for a in data["annotations"]}


def _image_id_of(vqa_question: dict[str, Any], by_qid: dict[int, int]) -> int:
    return by_qid[vqa_question["question_id"]]


def _limit(rows: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    return rows if limit is None else rows[:limit]


def _image_folder(src_task: Path) -> str:
    manifest = json.loads((src_task / "manifest.json").read_text())
    folder = Path(manifest["image_folder"])
    return str((folder if folder.is_absolute() else src_task / folder).resolve())


def derive_coco(src: Path, dst: Path, split: str, limit: int | None) -> int:
    s = SOURCE_SPLIT["coco"][split]
    rows = _limit(_read_jsonl(src / "coco" / f"{s}_questions.jsonl"), limit)
    keep = {r["question_id"] for r in rows}
    ann = json.loads((src / "coco" / f"{s}_annotations.json").read_text())
    ann["annotations"] = [a for a in ann["annotations"] if a["image_id"] in keep]
    ann["images"] = [im for im in ann.get("images", []) if im["id"] in keep]
    if {a["image_id"] for a in ann["annotations"]} != keep:
        raise ValueError(
            f"{src}/coco/{s}_questions.jsonl: question_id must equal the COCO image_id of its "
            f"references; {len(keep - {a['image_id'] for a in ann['annotations']})} have none"
        )
    _write_jsonl(dst / "coco" / f"{split}_questions.jsonl", rows)
    atomic_write_json(dst / "coco" / f"{split}_annotations.json", ann, indent=None)
    return len(rows)


def derive_vqav2(src: Path, dst: Path, split: str, limit: int | None) -> int:
    qjson = json.loads((src / "vqav2" / "val_questions.json").read_text())
    anns = json.loads((src / "vqav2" / "val_annotations.json").read_text())
    image_of = {q["question_id"]: q["image_id"] for q in qjson["questions"]}
    images = _coco_image_ids(src, split)
    rows = [r for r in _read_jsonl(src / "vqav2" / "val_questions.jsonl") if image_of[r["question_id"]] in images]
    rows = _limit(rows, limit)
    if not rows:
        raise ValueError(f"{src}/vqav2/val_questions.jsonl: no question on the Karpathy {split} images")
    keep = {r["question_id"] for r in rows}
    qjson["questions"] = [q for q in qjson["questions"] if q["question_id"] in keep]
    anns["annotations"] = [a for a in anns["annotations"] if a["question_id"] in keep]
    _write_jsonl(dst / "vqav2" / f"{split}_questions.jsonl", rows)
    atomic_write_json(dst / "vqav2" / f"{split}_questions.json", qjson, indent=None)
    atomic_write_json(dst / "vqav2" / f"{split}_annotations.json", anns, indent=None)
    return len(rows)


def derive_gqa(src: Path, dst: Path, split: str, limit: int | None) -> int:
    s = SOURCE_SPLIT["gqa"][split]
    rows = _limit(_read_jsonl(src / "gqa" / f"{s}_questions.jsonl"), limit)
    keep = {str(r["question_id"]) for r in rows}
    qs = json.loads((src / "gqa" / f"{s}_questions.json").read_text())
    _write_jsonl(dst / "gqa" / f"{split}_questions.jsonl", rows)
    atomic_write_json(dst / "gqa" / f"{split}_questions.json", {k: v for k, v in qs.items() if k in keep}, indent=None)
    return len(rows)


DERIVE = {"coco": derive_coco, "vqav2": derive_vqav2, "gqa": derive_gqa}


def build_eval_root(
    src: Path, dst: Path, tasks: Iterable[str], val_limit: int | None, test_limit: int | None
) -> dict[str, dict[str, int]]:
    """Write dst/<task>/{val,test}_* for every task; returns question counts. Idempotent."""
    stamp = dst / "eval_data.json"
    key = {
        "src": str(src.resolve()),
        "src_stamp": (src / "build_stamp.json").read_text() if (src / "build_stamp.json").exists() else None,
        "val_limit": val_limit,
        "test_limit": test_limit,
        "tasks": sorted(tasks),
        "version": 1,
    }
    if stamp.exists() and json.loads(stamp.read_text()).get("key") == key:
        return json.loads(stamp.read_text())["counts"]
    counts: dict[str, dict[str, int]] = {}
    for task in sorted(tasks):
        counts[task] = {
            split: DERIVE[task](src, dst, split, lim) for split, lim in (("val", val_limit), ("test", test_limit))
        }
        atomic_write_json(
            dst / task / "manifest.json",
            {
                "task": task,
                "image_folder": _image_folder(src / task),
                "derived_from": str(src / task),
                "counts": counts[task],
            },
        )
    atomic_write_json(stamp, {"key": key, "counts": counts})
    return counts
