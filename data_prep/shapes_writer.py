"""Writes generated shapes-world items in the official COCO / Karpathy / VQAv2 / GQA formats.

Layout (under DATA_ROOT/raw/, built in a temp dir and renamed into place):
  images/{train2014,val2014,test2015}/COCO_<folder>_<id:012d>.jpg
  coco/annotations/captions_{train2014,val2014}.json, coco/dataset_coco.json
  vqav2/v2_OpenEnded_mscoco_{train2014,val2014,test-dev2015}_questions.json
  vqav2/v2_mscoco_{train2014,val2014}_annotations.json
  gqa/images/<imageId>.jpg (hard links), gqa/{train,val,testdev}_balanced_questions.json
  pretrain/images/{train2014,val2014}/..., pretrain/captions_{train2014,val2014}.json,
  pretrain/v2_OpenEnded_mscoco_{train2014,val2014}_questions.json, pretrain/v2_mscoco_*_annotations.json
  shapes_meta.json (scenes + question family per question id), stats.json (chance levels)
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict
from pathlib import Path

from data_prep.shapes_gqa import gqa_record
from data_prep.shapes_preset import GENERATOR_VERSION, SPLITS, Item, ShapesPreset, preset_fingerprint
from data_prep.shapes_scene import jpeg_bytes, render
from data_prep.shapes_text import words
from llava_structlora.utils.io import atomic_directory

LICENSES = [{"url": "https://www.apache.org/licenses/LICENSE-2.0", "id": 1, "name": "Apache-2.0"}]
DATE = "2026-01-01 00:00:00"  # fixed: outputs must be byte-identical across runs


def _info(what: str) -> dict:
    return {
        "description": f"Shapes world {what} ({GENERATOR_VERSION}), official-format stand-in",
        "url": "https://github.com/llava-structlora",
        "version": "1.0",
        "year": 2026,
        "contributor": "llava-structlora data_prep.shapes_world",
        "date_created": DATE,
    }


def _vqa_license() -> dict:
    return {"url": LICENSES[0]["url"], "name": LICENSES[0]["name"]}


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False) + "\n", encoding="utf-8")


def coco_captions(items: list[Item], what: str, size: int) -> dict:
    images = [
        {
            "license": 1,
            "file_name": it.file_name,
            "coco_url": "",
            "height": size,
            "width": size,
            "date_captured": DATE,
            "flickr_url": "",
            "id": it.image_id,
        }
        for it in items
    ]
    anns = [
        {"image_id": it.image_id, "id": it.image_id * 10 + k, "caption": c}
        for it in items
        for k, c in enumerate(it.captions)
    ]
    return {"info": _info(what), "images": images, "licenses": LICENSES, "annotations": anns}


def karpathy(items_by_split: dict[str, list[Item]]) -> dict:
    """dataset_coco.json: train (train2014) + restval/val/test (val2014), global imgid/sentid."""
    images, sentid = [], 0
    for split in ("train", "restval", "val", "test"):
        for it in items_by_split[split]:
            imgid = len(images)
            sents = []
            for c in it.captions:
                sents.append({"tokens": words(c), "raw": c, "imgid": imgid, "sentid": sentid})
                sentid += 1
            images.append(
                {
                    "filepath": it.folder,
                    "sentids": [s["sentid"] for s in sents],
                    "filename": it.file_name,
                    "imgid": imgid,
                    "split": split,
                    "sentences": sents,
                    "cocoid": it.image_id,
                }
            )
    return {"images": images, "dataset": "coco"}


def vqa_questions(items: list[Item], subtype: str) -> dict:
    qs = [
        {"image_id": it.image_id, "question": v.qa.question, "question_id": it.image_id * 1000 + k}
        for it in items
        for k, v in enumerate(it.vqa)
    ]
    return {
        "info": _info(f"VQAv2 {subtype}"),
        "task_type": "Open-Ended",
        "data_type": "mscoco",
        "license": _vqa_license(),
        "data_subtype": subtype,
        "questions": qs,
    }


def vqa_annotations(items: list[Item], subtype: str) -> dict:
    anns = [
        {
            "question_type": v.qa.question_type,
            "multiple_choice_answer": v.mc_answer,
            "answers": v.answers,
            "image_id": it.image_id,
            "answer_type": v.qa.answer_type,
            "question_id": it.image_id * 1000 + k,
        }
        for it in items
        for k, v in enumerate(it.vqa)
    ]
    return {
        "info": _info(f"VQAv2 {subtype}"),
        "license": _vqa_license(),
        "data_subtype": subtype,
        "annotations": anns,
        "data_type": "mscoco",
    }


def gqa_questions(items: list[Item]) -> dict:
    return {
        str(it.image_id * 100 + k): gqa_record(qa, str(it.image_id), str(it.image_id * 100 + k))
        for it in items
        for k, qa in enumerate(it.gqa)
    }


def _write_images(items: list[Item], folder: Path, preset: ShapesPreset) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for it in items:
        img = render(it.scene, preset.image_size, random.Random(it.render_key))
        (folder / it.file_name).write_bytes(jpeg_bytes(img, preset.jpeg_quality))


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # filesystems without hard links
        shutil.copyfile(src, dst)


def _meta(items: dict[str, list[Item]], preset: ShapesPreset, seed: int) -> dict:
    scenes, families = {}, {}
    for split, its in items.items():
        for it in its:
            scenes[str(it.image_id)] = {
                "split": split,
                "folder": it.folder,
                "file_name": it.file_name,
                "objects": [asdict(o) for o in it.scene.objects],
            }
            for k, v in enumerate(it.vqa):
                families[str(it.image_id * 1000 + k)] = v.qa.family
            for k, qa in enumerate(it.gqa):
                families[str(it.image_id * 100 + k)] = qa.family
    return {**preset_fingerprint(preset, seed), "scenes": scenes, "question_family": families}


def write_raw(items: dict[str, list[Item]], preset: ShapesPreset, seed: int, raw: Path) -> None:
    """Write every file of raw/ into the (empty) directory `raw`."""
    from data_prep.shapes_stats import world_stats

    img = raw / "images"
    for spec in SPLITS:
        if not spec.pretrain:
            _write_images(items[spec.name], img / spec.folder, preset)
    val2014 = items["restval"] + items["val"] + items["test"]
    coco = raw / "coco"
    for sub, its in (("train2014", items["train"]), ("val2014", val2014)):
        _dump(coco / "annotations" / f"captions_{sub}.json", coco_captions(its, f"captions {sub}", preset.image_size))
    _dump(coco / "dataset_coco.json", karpathy(items))
    vqa, vqa_val = raw / "vqav2", items["val"] + items["test"]
    for sub, its in (("train2014", items["train"]), ("val2014", vqa_val), ("test-dev2015", items["testdev"])):
        _dump(vqa / f"v2_OpenEnded_mscoco_{sub}_questions.json", vqa_questions(its, sub))
        if sub != "test-dev2015":
            _dump(vqa / f"v2_mscoco_{sub}_annotations.json", vqa_annotations(its, sub))
    gqa = raw / "gqa"
    (gqa / "images").mkdir(parents=True, exist_ok=True)
    for name, split in (("train", "train"), ("val", "val"), ("testdev", "test")):
        for it in items[split]:
            _link(img / it.folder / it.file_name, gqa / "images" / f"{it.image_id}.jpg")
        _dump(gqa / f"{name}_balanced_questions.json", gqa_questions(items[split]))
    pre = raw / "pretrain"
    for split, sub in (("pretrain_train", "train2014"), ("pretrain_val", "val2014")):
        _write_images(items[split], pre / "images" / sub, preset)
        caps = coco_captions(items[split], f"pretraining captions {sub}", preset.image_size)
        _dump(pre / f"captions_{sub}.json", caps)
        _dump(pre / f"v2_OpenEnded_mscoco_{sub}_questions.json", vqa_questions(items[split], sub))
        _dump(pre / f"v2_mscoco_{sub}_annotations.json", vqa_annotations(items[split], sub))
    _dump(raw / "shapes_meta.json", _meta(items, preset, seed))
    _dump(raw / "stats.json", world_stats(items))


def write_world(items: dict[str, list[Item]], preset: ShapesPreset, seed: int, out_root: Path) -> Path:
    """(Re)write out_root/raw atomically: a crash leaves the old or the new raw/, never half."""
    out_root = Path(out_root)
    with atomic_directory(out_root / "raw") as tmp:
        tmp.chmod(0o755)  # mkdtemp makes it 0700
        write_raw(items, preset, seed, tmp)
    return out_root / "raw"
