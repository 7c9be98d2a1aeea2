"""Tiny hand-made files in the official COCO / VQAv2 / GQA formats, for converter tests."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image


def jpeg(path: Path, color: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path, "JPEG")
    return path


def dump(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def coco_name(subtype: str, image_id: int) -> str:
    return f"COCO_{subtype}_{image_id:012d}.jpg"


def coco_captions(root: Path, subtype: str, image_ids: list[int], n_caps: int = 2) -> Path:
    """captions_<subtype>.json; caption k of image i has id 10*i+k and text 'shape i number k'."""
    images, anns = [], []
    for iid in image_ids:
        name = coco_name(subtype, iid)
        jpeg(root / "images" / subtype / name)
        images.append({"id": iid, "file_name": name, "height": 8, "width": 8})
        anns += [{"id": 10 * iid + k, "image_id": iid, "caption": f"shape {iid} number {k}."} for k in range(n_caps)]
    return dump(
        root / "annotations" / f"captions_{subtype}.json",
        {"info": {"description": "tiny"}, "licenses": [{"id": 1, "name": "x"}], "images": images, "annotations": anns},
    )


def karpathy(root: Path, splits: dict[int, str]) -> Path:
    return dump(
        root / "dataset_coco.json",
        {
            "dataset": "coco",
            "images": [
                {"cocoid": cid, "split": s, "filepath": "x", "filename": "x", "sentences": []}
                for cid, s in splits.items()
            ],
        },
    )


def vqa_questions(root: Path, subtype: str, qs: list[tuple[int, int, str]]) -> Path:
    """qs: (question_id, image_id, question); writes the images of the right folder too."""
    img_sub = "test2015" if subtype.startswith("test") else subtype
    for _, iid, _ in qs:
        jpeg(root / "images" / img_sub / coco_name(img_sub, iid))
    return dump(
        root / f"v2_OpenEnded_mscoco_{subtype}_questions.json",
        {
            "info": {"description": "tiny"},
            "task_type": "Open-Ended",
            "data_type": "mscoco",
            "license": {"name": "x"},
            "data_subtype": subtype,
            "questions": [{"question_id": q, "image_id": i, "question": t} for q, i, t in qs],
        },
    )


def vqa_annotation(qid: int, image_id: int, answer: str, answer_type: str = "other") -> dict:
    return {
        "question_id": qid,
        "image_id": image_id,
        "question_type": "what",
        "answer_type": answer_type,
        "multiple_choice_answer": answer,
        "answers": [{"answer": answer, "answer_confidence": "yes", "answer_id": k + 1} for k in range(10)],
    }


def vqa_annotations(root: Path, subtype: str, anns: list[dict]) -> Path:
    return dump(
        root / f"v2_mscoco_{subtype}_annotations.json",
        {
            "info": {"description": "tiny"},
            "license": {"name": "x"},
            "data_type": "mscoco",
            "data_subtype": subtype,
            "annotations": anns,
        },
    )


def gqa_question(image_id: str, question: str, answer: str | None) -> dict:
    rec = {
        "imageId": image_id,
        "question": question,
        "fullAnswer": f"It is {answer}.",
        "isBalanced": True,
        "types": {"structural": "query", "semantic": "attr", "detailed": "color"},
    }
    if answer is not None:
        rec["answer"] = answer
    return rec


def gqa_file(root: Path, split: str, qs: dict[str, dict]) -> Path:
    for rec in qs.values():
        jpeg(root / "gqa_images" / f"{rec['imageId']}.jpg")
    return dump(root / f"{split}_balanced_questions.json", qs)


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
