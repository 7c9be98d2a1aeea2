"""Official GQA balanced question files -> LLaVA training JSON, eval questions and scorer files.

    python -m data_prep.gqa --questions DATA_ROOT/raw/gqa/train_balanced_questions.json \
        --images DATA_ROOT/raw/gqa/images --out DATA_ROOT/gqa
    python -m data_prep.gqa --questions DATA_ROOT/raw/gqa/testdev_balanced_questions.json \
        --images DATA_ROOT/raw/gqa/images --out DATA_ROOT/gqa

Input: the official format, a JSON object keyed by question id whose values hold `imageId`,
`question`, `answer`, `fullAnswer`, `types` {structural, semantic, detailed}, ... The split
is read from the file name (`<split>_{balanced,all}_questions.json`, split in train, val,
testdev, test, challenge, submission) or given with `--split` (one file only). Several files
may be given at once; separate runs into the same `--out` merge their manifests per split.
Images are `<imageId>.jpg` directly under `--images`.

Outputs in `--out` (`image` paths are relative to `image_folder` of the manifest):
- `llava_train.json` (train split): one record per question, `{"id": question_id,
  "image": "<imageId>.jpg", "conversations": [human "<image>\\n<question>\\nAnswer the question
  using a single word or phrase.", gpt answer]}`.
- `<split>_questions.jsonl` (other splits): `{"question_id": str, "image", "text":
  "<question>\\nAnswer the question using a single word or phrase."}`.
- `<split>_questions.json` (other splits): the official object restricted to the kept
  questions, every field copied -- the GQA scorer reads `answer` and `types` from it.
- `manifest.json`, `image_folder.txt` (see data_prep.common.write_manifest).

Splits train, val and testdev need answers (a record with an empty answer is skipped);
test, challenge and submission have none. Memory holds only the list of valid ids.
"""

from __future__ import annotations

import argparse
import re
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
from data_prep.jsonstream import ConvertError, JsonStreamWriter, field, iter_json, jsonl_line, require_object

SPLITS = ("train", "val", "testdev", "test", "challenge", "submission")
WITH_ANSWERS = ("train", "val", "testdev")
_NAME = re.compile(r"^(train|val|testdev|test|challenge|submission)_(?:balanced|all)_questions")


def split_of(path: Path, split: str | None) -> str:
    if split is not None:
        if split not in SPLITS:
            raise ConvertError(f"--split must be one of {SPLITS}, got {split!r}")
        return split
    m = _NAME.match(path.name)
    if m is None:
        raise ConvertError(
            f"{path}: cannot infer the split from the file name (expected "
            f"<split>_balanced_questions.json); pass --split"
        )
    return m.group(1)


def _question(rec: Any, path: Path, qid: str, split: str) -> tuple[str, str, str | None]:
    where = f"question_id={qid}"
    image_id = field(rec, "imageId", path, where)
    text = field(rec, "question", path, where).strip()
    answer = field(rec, "answer", path, where).strip() if split in WITH_ANSWERS else None
    return image_id, text, answer


def _valid_questions(path: Path, split: str, checker: ImageChecker, log: SkipLog) -> list[str]:
    seen: set[str] = set()
    valid: list[str] = []
    for qid, rec in iter_json(path, "", kv=True):
        if qid in seen:
            raise ConvertError(f"{path}: duplicated question id {qid!r}")
        seen.add(qid)
        image_id, text, answer = _question(rec, path, qid, split)
        rel = f"{image_id}.jpg"
        where = f"{path}: question_id={qid}"
        if answer is not None and not answer:
            log.skip(split, "empty_answer", where)
        elif not text:
            log.skip(split, "empty_question", where)
        elif problem := checker.problem(rel):
            log.skip(split, problem, f"{where}: {checker.root / rel}")
        else:
            valid.append(qid)
    if not seen:
        require_object(path)
    return valid


def _write(path: Path, split: str, keep: set[str], out: Path) -> list[str]:
    if split == "train":
        with atomic_open(out / "llava_train.json") as f:
            w = JsonStreamWriter(f)
            for qid, rec in iter_json(path, "", kv=True):
                if qid in keep:
                    image_id, text, answer = _question(rec, path, qid, split)
                    w.add(llava_record(qid, f"{image_id}.jpg", short_answer_text(text), answer))
            w.close()
        return ["llava_train.json"]
    names = [f"{split}_questions.jsonl", f"{split}_questions.json"]
    with atomic_open(out / names[0]) as fj, atomic_open(out / names[1]) as fq:
        w = JsonStreamWriter(fq, kind="dict")
        for qid, rec in iter_json(path, "", kv=True):
            if qid in keep:
                image_id, text, _ = _question(rec, path, qid, split)
                fj.write(jsonl_line(eval_question(qid, f"{image_id}.jpg", short_answer_text(text))))
                w.add(rec, key=qid)
        w.close()
    return names


def convert_gqa(
    questions: list,
    *,
    images: str,
    out: str,
    split: str | None = None,
    limit: int | None = None,
    fraction: float | None = None,
    eval_limit: int | None = None,
    seed: int = 0,
    check_images: str = "exists",
    strict: bool = False,
) -> dict:
    """Convert official GQA question files; returns the written manifest."""
    sampling = Sampling(limit, fraction, eval_limit, seed, check_images, strict)
    paths = [Path(q) for q in questions]
    if split is not None and len(paths) != 1:
        raise ConvertError("--split applies to a single --questions file")
    plan = [(p, split_of(p, split)) for p in paths]
    names = [s for _, s in plan]
    if len(set(names)) != len(names):
        raise ConvertError(f"two files for one split: {[str(p) for p in paths]}")
    out_dir = Path(out)
    check_task_dir(out_dir, "gqa", images)  # never replace another task's output
    checker, log = ImageChecker(images, check_images), SkipLog(strict)
    with staged_task_dir(out_dir, "gqa", images) as stage:  # published whole when the manifest is written
        return _convert_into(stage, plan, sampling, checker, log, images, out_dir)


def _convert_into(stage, plan, sampling, checker, log, images, out_dir) -> dict:
    """Write every split's files into `stage`, the manifest last (paths relative to the final `out_dir`)."""
    splits: dict[str, dict] = {}
    for path, name in plan:
        if not path.is_file():
            raise ConvertError(f"input file not found: {path}")
        valid = _valid_questions(path, name, checker, log)
        is_train = name == "train"
        keep = sampling.keep(valid, is_train)
        splits[name] = {
            "count": len(keep),
            "candidates": len(valid),
            **log.summary(name),
            "files": _write(path, name, keep, stage),
            "unit": "question",
            "sources": {"questions": portable_path(path, out_dir)},
            "options": sampling.options(is_train),
        }
    return write_manifest(stage, "gqa", portable_path(images, out_dir), splits)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_prep.gqa", description=__doc__.split("\n")[0])
    p.add_argument("--questions", nargs="+", required=True, help="official <split>_balanced_questions.json file(s)")
    p.add_argument("--split", choices=SPLITS, default=None, help="split of a single file whose name does not say it")
    add_common_args(p)
    args = p.parse_args(argv)
    return run_cli(convert_gqa, {"questions": args.questions, "split": args.split, **common_kwargs(args)})


if __name__ == "__main__":
    raise SystemExit(main())
