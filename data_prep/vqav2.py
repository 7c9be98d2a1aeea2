"""Official VQAv2 files -> LLaVA training JSON, eval questions and scorer files.

    python -m data_prep.vqav2 \
        --questions v2_OpenEnded_mscoco_train2014_questions.json \
                    v2_OpenEnded_mscoco_val2014_questions.json \
                    v2_OpenEnded_mscoco_test-dev2015_questions.json \
        --annotations v2_mscoco_train2014_annotations.json v2_mscoco_val2014_annotations.json \
        --images DATA_ROOT/raw/images --out DATA_ROOT/vqav2 [--fraction 0.1 --seed 0]

The split of each file comes from its official `data_subtype` field: train2014 -> train,
val2014 -> val, test-dev2015 -> test-dev, test2015 -> test. Images follow the official naming
`COCO_<subtype>_<image_id:012d>.jpg` (test-dev uses the test2015 images); `--images` may be
the folder holding the files or its parent holding `train2014/`, `val2014/`, `test2015/`.

Outputs in `--out` (`image` paths are relative to `image_folder` of the manifest):
- `llava_train.json`: one record per training question,
  `{"id": str(question_id), "image", "conversations": [human "<image>\\n<question>\\nAnswer the
  question using a single word or phrase.", gpt multiple_choice_answer]}`.
- `val_questions.jsonl`, `test-dev_questions.jsonl`, `test_questions.jsonl`: LLaVA eval lines
  `{"question_id": int, "image", "text": "<question>\\nAnswer the question using a single word
  or phrase."}`.
- `<split>_questions.json`: the official questions file restricted to the kept questions
  (header fields copied); `val_annotations.json`: the official annotations restricted to the
  same questions (all 10 answers, answer/question types) -- what the VQAv2 scorer reads.
- `manifest.json`, `image_folder.txt` (see data_prep.common.write_manifest).

Memory: annotations are streamed with ijson; only question_id -> multiple_choice_answer and
the list of valid question ids are held, so a 330 MB annotation file is never loaded whole.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.common import (
    ImageChecker,
    Sampling,
    SkipLog,
    add_common_args,
    atomic_open,
    check_task_dir,
    common_kwargs,
    eval_question,
    llava_record,
    portable_path,
    run_cli,
    short_answer_text,
    staged_task_dir,
    write_manifest,
)
from data_prep.jsonstream import (
    ConvertError,
    JsonStreamWriter,
    field,
    iter_json,
    jsonl_line,
    read_header,
    require_array,
)

SPLITS = {"train2014": "train", "val2014": "val", "test-dev2015": "test-dev", "test2015": "test"}
IMAGE_SUBTYPE = {"test-dev2015": "test2015"}
NEEDS_ANSWERS = ("train", "val")
QUESTION_HEADER = ("info", "task_type", "data_type", "license", "data_subtype")
ANNOTATION_HEADER = ("info", "license", "data_type", "data_subtype")


@dataclass
class Source:
    split: str
    subtype: str
    questions: Path
    annotations: Path | None = None


def _subtype(path: Path) -> str:
    sub = read_header(path, ["data_subtype"]).get("data_subtype")
    if sub not in SPLITS:
        raise ConvertError(f"{path}: official field 'data_subtype' is {sub!r}; expected one of {sorted(SPLITS)}")
    return sub


def plan_sources(questions: list, annotations: list) -> list[Source]:
    """Pair question and annotation files by split; refuse duplicates and orphans."""
    by_split: dict[str, Source] = {}
    for q in map(Path, questions):
        sub = _subtype(q)
        if SPLITS[sub] in by_split:
            raise ConvertError(
                f"two questions files for split {SPLITS[sub]!r}: {by_split[SPLITS[sub]].questions} and {q}"
            )
        by_split[SPLITS[sub]] = Source(SPLITS[sub], sub, q)
    for a in map(Path, annotations):
        split = SPLITS[_subtype(a)]
        if split not in by_split:
            raise ConvertError(f"{a}: annotations for split {split!r} but no questions file for it")
        if by_split[split].annotations is not None:
            raise ConvertError(f"two annotation files for split {split!r}: {by_split[split].annotations} and {a}")
        by_split[split].annotations = a
    for split in NEEDS_ANSWERS:
        if split in by_split and by_split[split].annotations is None:
            raise ConvertError(
                f"split {split!r} ({by_split[split].questions}) needs its annotations file (--annotations)"
            )
    return [by_split[s] for s in SPLITS.values() if s in by_split]


def _index_answers(src: Source) -> dict[int, str]:
    """question_id -> multiple_choice_answer, validating ids and required fields."""
    path, answers = src.annotations, {}
    for i, ann in enumerate(iter_json(path, "annotations.item")):
        qid = field(ann, "question_id", path, f"annotation #{i}", (int,))
        where = f"annotation #{i} (question_id={qid})"
        mc = field(ann, "multiple_choice_answer", path, where)
        humans = field(ann, "answers", path, where, (list,))
        if not humans:
            raise ConvertError(f"{path}: {where}: empty 'answers' list (the scorer needs the human answers)")
        for k, human in enumerate(humans):
            field(human, "answer", path, f"{where}: answers[{k}]")  # what the scorer reads: fail here, not there
        if qid in answers:
            raise ConvertError(f"{path}: {where}: duplicated question_id {qid}")
        answers[qid] = mc.strip()
    if not answers:
        require_array(path, "annotations")
    return answers


def _question(q: Any, path: Path, i: int) -> tuple[int, int, str]:
    qid = field(q, "question_id", path, f"question #{i}", (int,))
    image_id = field(q, "image_id", path, f"question #{i} (question_id={qid})", (int,))
    text = field(q, "question", path, f"question #{i} (question_id={qid})")
    return qid, image_id, text.strip()


def image_path(checker: ImageChecker, subtype: str, image_id: int) -> str:
    sub = IMAGE_SUBTYPE.get(subtype, subtype)
    return checker.in_subdir(sub, f"COCO_{sub}_{image_id:012d}.jpg")


def _valid_questions(src: Source, answers: dict[int, str] | None, checker: ImageChecker, log: SkipLog) -> list[int]:
    """First pass: ids of usable questions; every unusable one is a counted skip."""
    seen: set[int] = set()
    valid: list[int] = []
    for i, q in enumerate(iter_json(src.questions, "questions.item")):
        qid, image_id, text = _question(q, src.questions, i)
        where = f"{src.questions}: question_id={qid}"
        if qid in seen:
            raise ConvertError(f"{src.questions}: question #{i}: duplicated question_id {qid}")
        seen.add(qid)
        rel = image_path(checker, src.subtype, image_id)
        if answers is not None and qid not in answers:
            log.skip(src.split, "no_annotation", where)
        elif answers is not None and not answers[qid]:
            log.skip(src.split, "empty_answer", f"{src.annotations}: question_id={qid}")
        elif not text:
            log.skip(src.split, "empty_question", where)
        elif problem := checker.problem(rel):
            log.skip(src.split, problem, f"{where}: {checker.root / rel}")
        else:
            valid.append(qid)
    if not seen:
        require_array(src.questions, "questions")
    for qid in sorted(set(answers or ()) - seen):
        log.skip(src.split, "annotation_without_question", f"{src.annotations}: question_id={qid}")
    return valid


def _write_train(src: Source, keep: set[int], answers: dict[int, str], checker: ImageChecker, out: Path) -> list[str]:
    with atomic_open(out / "llava_train.json") as f:
        w = JsonStreamWriter(f)
        for i, q in enumerate(iter_json(src.questions, "questions.item")):
            qid, image_id, text = _question(q, src.questions, i)
            if qid in keep:
                w.add(
                    llava_record(
                        str(qid), image_path(checker, src.subtype, image_id), short_answer_text(text), answers[qid]
                    )
                )
        w.close()
    return ["llava_train.json"]


def _write_eval(src: Source, keep: set[int], checker: ImageChecker, out: Path) -> list[str]:
    names = [f"{src.split}_questions.jsonl", f"{src.split}_questions.json"]
    head = read_header(src.questions, QUESTION_HEADER)
    with atomic_open(out / names[0]) as fj, atomic_open(out / names[1]) as fq:
        w = JsonStreamWriter(fq, head=head, key="questions")
        for i, q in enumerate(iter_json(src.questions, "questions.item")):
            qid, image_id, text = _question(q, src.questions, i)
            if qid in keep:
                rel = image_path(checker, src.subtype, image_id)
                fj.write(jsonl_line(eval_question(qid, rel, short_answer_text(text))))
                w.add(q)
        w.close()
    if src.annotations is not None:
        names.append(f"{src.split}_annotations.json")
        head = read_header(src.annotations, ANNOTATION_HEADER)
        with atomic_open(out / names[2]) as fa:
            w = JsonStreamWriter(fa, head=head, key="annotations")
            for ann in iter_json(src.annotations, "annotations.item"):
                if ann["question_id"] in keep:
                    w.add(ann)
            w.close()
    return names


def convert_vqav2(
    questions: list,
    annotations: list = (),
    *,
    images: str,
    out: str,
    limit: int | None = None,
    fraction: float | None = None,
    eval_limit: int | None = None,
    seed: int = 0,
    check_images: str = "exists",
    strict: bool = False,
) -> dict:
    """Convert official VQAv2 files; returns the written manifest (see module docstring)."""
    sampling = Sampling(limit, fraction, eval_limit, seed, check_images, strict)
    out_dir = Path(out)
    check_task_dir(out_dir, "vqav2", images)  # never replace another task's output
    checker, log = ImageChecker(images, check_images), SkipLog(strict)
    sources = plan_sources(list(questions), list(annotations))
    with staged_task_dir(out_dir, "vqav2", images) as stage:  # published whole when the manifest is written
        return _convert_into(stage, sources, sampling, checker, log, images, out_dir)


def _convert_into(stage, sources, sampling, checker, log, images, out_dir) -> dict:
    """Write every split's files into `stage`, the manifest last (paths relative to the final `out_dir`)."""
    splits: dict[str, dict] = {}
    for src in sources:
        answers = _index_answers(src) if src.annotations is not None else None
        valid = _valid_questions(src, answers, checker, log)
        is_train = src.split == "train"
        keep = sampling.keep(valid, is_train)
        files = _write_train(src, keep, answers, checker, stage) if is_train else _write_eval(src, keep, checker, stage)
        splits[src.split] = {
            "count": len(keep),
            "candidates": len(valid),
            **log.summary(src.split),
            "files": files,
            "unit": "question",
            "sources": {
                "questions": portable_path(src.questions, out_dir),
                "annotations": portable_path(src.annotations, out_dir) if src.annotations else None,
            },
            "options": sampling.options(is_train),
        }
        del answers
    return write_manifest(stage, "vqav2", portable_path(images, out_dir), splits)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_prep.vqav2", description=__doc__.split("\n")[0])
    p.add_argument("--questions", nargs="+", required=True, help="official *_questions.json files")
    p.add_argument("--annotations", nargs="*", default=[], help="official *_annotations.json files")
    add_common_args(p)
    args = p.parse_args(argv)
    return run_cli(convert_vqav2, {"questions": args.questions, "annotations": args.annotations, **common_kwargs(args)})


if __name__ == "__main__":
    raise SystemExit(main())
