"""Export our VQAv2 / GQA / COCO evaluation splits as lmms-eval tasks, scored by lmms-eval's own code.

    python -m llava_structlora.evaluation.lmms_export --data_root DATA_ROOT --out OUT_DIR \
        [--tasks vqav2 gqa coco] [--limit N]

For every task OUT_DIR/<name>/ gets
- ``data/``: the split as a ``datasets`` DatasetDict (``save_to_disk``; images embedded as bytes),
  with the fields lmms-eval's task utils read (``question``, ``image``, ``answers``/``answer``, ids);
- ``utils.py``: re-exports lmms-eval's own ``doc_to_visual`` / ``doc_to_text`` / ``process_results`` /
  aggregation functions (``lmms_eval.tasks.{vqav2,gqa,coco_cap}.utils``), so that the YAML's
  ``!function utils.x`` resolves to them: no scoring code of ours runs inside lmms-eval;
- ``<name>.yaml``: the task (``load_from_disk`` on ``data/``, our split's ``max_new_tokens``, the
  question text split into lmms-eval's ``question`` + ``post_prompt`` so the prompt is ours exactly).

``lmms_eval --include_path OUT_DIR --tasks structlora_vqav2_val,...`` then runs them
(``eval/lmms_eval.sh`` wraps the whole thing). Nothing here imports lmms-eval.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llava_structlora.evaluation.config import TASKS
from llava_structlora.evaluation.generate import load_questions
from llava_structlora.utils.errors import entry_point
from llava_structlora.utils.io import atomic_directory, atomic_write_json, atomic_write_text
from llava_structlora.utils.jsonio import read_json
from llava_structlora.utils.outputs import locked_output

POST_PROMPT = "\nAnswer the question using a single word or phrase."  # lmms-eval's default for VQAv2 / GQA
COCO_METRICS = ("Bleu_4", "Bleu_3", "Bleu_2", "Bleu_1", "METEOR", "ROUGE_L", "CIDEr")


@dataclass(frozen=True)
class LmmsTask:
    """Which lmms-eval utils module and functions score one of our tasks."""

    ours: str
    module: str
    visual: str
    text: str
    process_results: str | None
    split: str

    def name(self, split: str | None = None) -> str:
        return f"structlora_{self.ours}_{(split or self.split).replace('-', '_')}"


LMMS_TASKS = {
    "vqav2": LmmsTask(
        "vqav2",
        "lmms_eval.tasks.vqav2.utils",
        "vqav2_doc_to_visual",
        "vqav2_doc_to_text",
        "vqav2_process_results_val",
        "val",
    ),
    "gqa": LmmsTask("gqa", "lmms_eval.tasks.gqa.utils", "gqa_doc_to_visual", "gqa_doc_to_text", None, "testdev"),
    "coco": LmmsTask(
        "coco",
        "lmms_eval.tasks.coco_cap.utils",
        "coco_doc_to_visual",
        "coco_doc_to_text",
        "coco_process_result",
        "test",
    ),
}


class ExportError(ValueError):
    """The split cannot be exported (missing references, a question without an answer...)."""


# ---------------------------------------------------------------------------- records
def _split_prompt(text: str) -> str:
    return text[: -len(POST_PROMPT)] if text.endswith(POST_PROMPT) else text


def _image(path: Path) -> dict[str, Any]:
    return {"bytes": path.read_bytes(), "path": path.name}


def _records(path: Path, key: str) -> list[dict]:
    """The `key` list of a reference file (read_json names a torn file and the position)."""
    data = read_json(path, "references")
    recs = data.get(key) if isinstance(data, dict) else None
    if not isinstance(recs, list) or not all(isinstance(r, dict) for r in recs):
        raise ExportError(f"{path}: expected an object with a {key!r} list of objects")
    return recs


def _vqav2_docs(task_dir: Path, split: str, questions) -> Iterator[dict]:
    path = task_dir / f"{split}_annotations.json"
    by_qid = {a.get("question_id"): a for a in _records(path, "annotations")}
    for q in questions:
        ann = by_qid.get(int(q.qid))
        if ann is None:
            raise ExportError(f"{path}: no annotation for question {q.qid}")
        if not isinstance(ann.get("answers"), list) or not ann["answers"]:
            raise ExportError(f"{path}: question_id {q.qid} has no 'answers' (lmms-eval scores against them)")
        if not all(isinstance(a, dict) and isinstance(a.get("answer"), str) for a in ann["answers"]):
            raise ExportError(f"{path}: question_id {q.qid}: every answer needs a string 'answer'")
        answers = [
            {
                "answer": a["answer"],
                "answer_confidence": a.get("answer_confidence", "yes"),
                "answer_id": a.get("answer_id", i + 1),
            }
            for i, a in enumerate(ann["answers"])
        ]
        yield {
            "question_id": int(q.qid),
            "question": _split_prompt(q.text),
            "image": _image(q.image),
            "answers": answers,
            "answer": ann.get("multiple_choice_answer", answers[0]["answer"]),
            "answer_type": ann.get("answer_type", ""),
        }


def _gqa_docs(task_dir: Path, split: str, questions) -> Iterator[dict]:
    path = task_dir / f"{split}_questions.json"
    refs = read_json(path, "references")
    if not isinstance(refs, dict):
        raise ExportError(f"{path}: expected the official GQA object {{questionId: question}}")
    for q in questions:
        ref = refs.get(str(q.qid))
        if not isinstance(ref, dict) or not isinstance(ref.get("answer"), str):
            raise ExportError(f"{path}: no answer for question {q.qid}")
        yield {
            "question_id": str(q.qid),
            "question": _split_prompt(q.text),
            "image": _image(q.image),
            "answer": ref["answer"],
            "imageId": str(ref.get("imageId", "")),
        }


def _coco_docs(task_dir: Path, split: str, questions) -> Iterator[dict]:
    path = task_dir / f"{split}_annotations.json"
    files = {im.get("id"): im.get("file_name") for im in _records(path, "images")}
    caps: dict[int, list[str]] = {}
    for a in _records(path, "annotations"):
        if isinstance(a.get("caption"), str):
            caps.setdefault(a.get("image_id"), []).append(a["caption"])
    for q in questions:
        iid = int(q.qid)
        if iid not in caps or not isinstance(files.get(iid), str):
            raise ExportError(f"{path}: no captions for image {iid}")
        # lmms-eval's coco_process_result parses the image id from question_id's last "_" field
        yield {"question_id": files[iid], "id": iid, "question": q.text, "image": _image(q.image), "answer": caps[iid]}


DOCS = {"vqav2": _vqav2_docs, "gqa": _gqa_docs, "coco": _coco_docs}


# ---------------------------------------------------------------------------- task files
def utils_source(task: LmmsTask, own_text: bool) -> str:
    names = [task.visual, task.text] + ([task.process_results] if task.process_results else [])
    if task.ours == "coco":
        names += [f"coco_{m.lower().replace('_', '')}" for m in COCO_METRICS]
    lines = [
        '"""Generated by llava_structlora.evaluation.lmms_export: lmms-eval\'s own task functions,',
        'imported so that the YAML\'s `!function utils.NAME` resolves to them (no project code)."""',
        f"from {task.module} import {', '.join(names)}  # noqa: F401",
    ]
    if own_text:  # our split's prompt differs from lmms-eval's fixed one: keep ours (not a scoring function)
        lines += ["", "", "def doc_question(doc):", '    return doc["question"]']
    return "\n".join(lines) + "\n"


def _yaml_scalar(value: Any) -> str:
    return json.dumps(value)  # a JSON string/number is a valid YAML scalar


def task_yaml(task: LmmsTask, name: str, split: str, data_dir: Path, post_prompt: str, own_text: bool) -> str:
    """The lmms-eval task config (YAML text; `!function` tags need lmms-eval's loader, so no yaml.dump)."""
    max_new = TASKS[task.ours].max_new_tokens
    text = "doc_question" if own_text else task.text
    lines = [
        f"task: {name}",
        f"dataset_path: {_yaml_scalar(str(data_dir))}",
        "dataset_kwargs:",
        "  load_from_disk: true",
        f"test_split: {split}",
        "output_type: generate_until",
        f"doc_to_visual: !function utils.{task.visual}",
        f"doc_to_text: !function utils.{text}",
        'doc_to_target: "answer"',
        "generation_kwargs:",
        f"  max_new_tokens: {max_new}",
        "  temperature: 0",
        "  top_p: 1.0",
        "  num_beams: 1",
        "  do_sample: false",
    ]
    if task.process_results:
        lines.append(f"process_results: !function utils.{task.process_results}")
    lines.append("metric_list:")
    if task.ours == "coco":
        for m in COCO_METRICS:
            lines += [
                f"  - metric: coco_{m}",
                f"    aggregation: !function utils.coco_{m.lower().replace('_', '')}",
                "    higher_is_better: true",
            ]
    else:
        lines += ["  - metric: exact_match", "    aggregation: mean", "    higher_is_better: true"]
        if task.ours == "gqa":  # lmms-eval's gqa.yaml: the harness' exact_match with these options
            lines += ["    ignore_case: true", "    ignore_punctuation: true"]
    if task.ours != "coco":  # lmms-eval passes these to doc_to_text; coco_doc_to_text takes the doc only
        lines += [
            "lmms_eval_specific_kwargs:",
            "  default:",
            '    pre_prompt: ""',
            f"    post_prompt: {_yaml_scalar(post_prompt)}",
        ]
    lines += ["metadata:", "  - version: 0.0"]
    return "\n".join(lines) + "\n"


def export_task(data_root: Path, out: Path, ours: str, split: str | None = None, limit: int | None = None) -> dict:
    """Write OUT/<name>/{<name>.yaml, utils.py, data/}; returns a summary (name, n, paths)."""
    import datasets

    from llava_structlora.data import resolve_image_folder

    task = LMMS_TASKS[ours]
    split = split or task.split
    qfile = TASKS[ours].questions_jsonl(data_root, split)
    questions = load_questions(qfile, resolve_image_folder(qfile))[:limit]
    docs = list(DOCS[ours](data_root / ours, split, questions))
    if not docs:
        raise ExportError(f"{qfile}: no questions to export")
    full_texts = [q.text for q in questions]
    post_prompt = POST_PROMPT if ours != "coco" and all(t.endswith(POST_PROMPT) for t in full_texts) else ""
    if ours != "coco" and not post_prompt:
        for d, q in zip(docs, questions):
            d["question"] = q.text  # keep every prompt whole when not all of them end with the default
    own_text = ours == "coco" and any(t != "Provide a one-sentence caption for the provided image." for t in full_texts)
    features = datasets.Features({**{k: _feature(v) for k, v in docs[0].items()}, "image": datasets.Image()})
    name = task.name(split)
    with atomic_directory(out / name) as tmp:
        ds = datasets.Dataset.from_list(docs, features=features)
        datasets.DatasetDict({split: ds}).save_to_disk(str(tmp / "data"))
        atomic_write_text(tmp / "utils.py", utils_source(task, own_text))
        atomic_write_text(
            tmp / f"{name}.yaml", task_yaml(task, name, split, (out / name / "data").resolve(), post_prompt, own_text)
        )
        info = {
            "task": name,
            "ours": ours,
            "split": split,
            "n": len(docs),
            "questions": str(qfile),
            "max_new_tokens": TASKS[ours].max_new_tokens,
            "lmms_eval_utils": task.module,
        }
        atomic_write_json(tmp / "export.json", info)
    return info


def _feature(value: Any):
    import datasets

    if isinstance(value, bool):
        return datasets.Value("bool")
    if isinstance(value, int):
        return datasets.Value("int64")
    if isinstance(value, str):
        return datasets.Value("string")
    if isinstance(value, list) and value and isinstance(value[0], str):
        return datasets.Sequence(datasets.Value("string"))
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [{k: _feature(v) for k, v in value[0].items()}]
    return datasets.Value("string")


def export_all(
    data_root: str | Path, out: str | Path, tasks: list[str] | None = None, limit: int | None = None
) -> list[dict]:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ExportError(f"--limit must be a positive number of questions, got {limit!r} (leave it out for all)")
    data_root, out = Path(data_root), Path(out)
    with locked_output(out, "lmms-eval export"):  # each task dir and tasks.json are published by one rename
        infos = [export_task(data_root, out, t, limit=limit) for t in (tasks or list(LMMS_TASKS))]
        atomic_write_json(out / "tasks.json", infos)
    return infos


@entry_point("lmms_export")
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data_root", required=True, help="DATA_ROOT with <task>/<split>_questions.jsonl + references")
    ap.add_argument("--out", required=True, help="directory to pass to lmms_eval --include_path")
    ap.add_argument("--tasks", nargs="+", default=list(LMMS_TASKS), choices=list(LMMS_TASKS))
    ap.add_argument("--limit", type=int, default=None, help="export only the first N questions of each split")
    args = ap.parse_args(argv)
    infos = export_all(args.data_root, args.out, args.tasks, args.limit)  # user errors: exit 2 (entry_point)
    print(",".join(i["task"] for i in infos))
    return 0


if __name__ == "__main__":
    sys.exit(main())
