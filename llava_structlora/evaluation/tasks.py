"""Each evaluation task as one spec object: its files under DATA_ROOT, answer length, official results
format, scorer and headline metric. Evaluation, training's validation and the recipes ask ``TASKS[name]``;
they never compare task names (as methods are specs in train/specs.py).

    coco    Karpathy captions: CIDEr (+ BLEU-4, METEOR, ROUGE-L), pycocoevalcap
    vqav2   VQAv2 accuracy (official rules; protocol `llava` adds the EvalAI answer processor)
    gqa     GQA exact match (protocol `llava` strips a trailing period and lowercases)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llava_structlora.metrics import score_captions, score_gqa_protocols, score_vqav2_protocols
from llava_structlora.metrics.gqa import llava_gqa_prediction
from llava_structlora.metrics.vqa_normalize import evalai_answer_processor
from llava_structlora.utils.jsonio import read_json

PROTOCOLS = ("official", "llava")
_PARTIAL_KEYS = ("n_missing", "n_unknown", "n_duplicate")


def _int_id(qid: Any, task: str) -> int:
    try:
        return int(qid)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{task}: question_id {qid!r} is not an integer id") from e


def _json_object(path: Path, what: str) -> dict:
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object ({what}), got {type(data).__name__}")
    return data


def pad_vqav2_submission(results: list[dict], all_test_ids: Sequence[int]) -> tuple[list[dict], int]:
    """EvalAI wants every test2015 question; LLaVA fills the unanswered ones with ''."""
    have = {r["question_id"] for r in results}
    extra = [{"question_id": int(q), "answer": ""} for q in all_test_ids if int(q) not in have]
    return results + extra, len(extra)


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's questions and scorer references live, and how its answers are scored."""

    name: str
    default_split: str
    max_new_tokens: int
    reference_files: tuple[str, ...]  # patterns with {split}; all must exist to score
    main_metric: str  # the headline number of metrics.json
    captions: bool = False  # free-text answers (CLIPScore applies)

    def questions_jsonl(self, data_root: Path, split: str) -> Path:
        return Path(data_root) / self.name / f"{split}_questions.jsonl"

    def references(self, data_root: Path, split: str) -> list[Path]:
        return [Path(data_root) / self.name / p.format(split=split) for p in self.reference_files]

    def splits(self, data_root: Path) -> list[str]:
        """The splits DATA_ROOT/<task>/ has question files for (what a mistyped --split is told to pick from)."""
        files = (Path(data_root) / self.name).glob("*_questions.jsonl")
        return sorted(p.name.removesuffix("_questions.jsonl") for p in files)

    def reference_ids(self, refs: list[Path]) -> set[str]:
        """The question ids the references know (as strings), for the check that questions and references belong
        to one split."""
        raise NotImplementedError

    def check_questions(self, question_ids: Sequence[Any], questions_file: Path, refs: list[Path]) -> None:
        """ValueError naming both files when the questions are not the references' (e.g. another split's file)."""
        known = self.reference_ids(refs)
        foreign = [q for q in question_ids if str(q) not in known]
        if foreign:
            raise ValueError(
                f"{questions_file}: {len(foreign)} of {len(question_ids)} question ids (e.g. {foreign[0]!r}) are not "
                f"in {refs[0]}: the question file and the references come from different splits; rebuild "
                f"{questions_file.parent} with the task's converter"
            )

    def has_answers(self, refs: list[Path]) -> bool:
        """Whether the references can score (else the split is submission-only)."""
        return all(p.is_file() for p in refs)

    def to_results(self, answers: Sequence[dict], submission: bool = False, protocol: str = "official") -> list[dict]:
        """The official results list from LLaVA answer records (submission files get the protocol's processing)."""
        raise NotImplementedError

    def pad_submission(self, results: list[dict], data_root: Path, split: str) -> tuple[list[dict], int | None]:
        """(the upload file's entries, how many empty answers were added; None: no padding for this split)."""
        return results, None

    def score(self, refs: list[Path], results: Path, protocol: str, partial: bool, meteor: bool) -> dict[str, Any]:
        """Scores under ``protocol`` at the top level (VQAv2/GQA: ``protocols`` holds both side by side).

        With ``partial`` (``--limit``) the references hold more questions than were answered: the intersection
        is scored, after checking that every answered id is a reference id, answered once.
        """
        raise NotImplementedError

    def _both_protocols(self, by: dict[str, dict], protocol: str, partial: bool, results: Path) -> dict[str, Any]:
        chosen = by[protocol]
        if partial and (chosen.get("n_unknown") or chosen.get("n_duplicate")):
            raise ValueError(f"{results}: {chosen['n_unknown']} unknown / {chosen['n_duplicate']} duplicated ids")
        drop = ("protocol", "n", *_PARTIAL_KEYS)
        metrics = {k: v for k, v in chosen.items() if k not in _PARTIAL_KEYS}
        metrics["protocols"] = {p: {k: v for k, v in m.items() if k not in drop} for p, m in by.items()}
        return metrics


class CocoTask(TaskSpec):
    def reference_ids(self, refs):
        return {str(im["id"]) for im in _json_object(refs[0], "COCO captions annotations").get("images", [])}

    def to_results(self, answers, submission=False, protocol="official"):
        return [{"image_id": _int_id(a["question_id"], self.name), "caption": a["text"]} for a in answers]

    def score(self, refs, results, protocol, partial, meteor):
        return score_captions(refs[0], results, meteor=meteor)


class VQAv2Task(TaskSpec):
    def reference_ids(self, refs):
        return {str(q["question_id"]) for q in _json_object(refs[0], "VQAv2 questions").get("questions", [])}

    def to_results(self, answers, submission=False, protocol="official"):
        post = protocol == "llava" and submission
        return [
            {
                "question_id": _int_id(a["question_id"], self.name),
                "answer": evalai_answer_processor(a["text"]) if post else a["text"],
            }
            for a in answers
        ]

    def pad_submission(self, results, data_root, split):
        """EvalAI's test-dev upload wants every test2015 question: LLaVA fills the unanswered ones with ''."""
        full_test = self.questions_jsonl(data_root, "test")
        if split != "test-dev" or not full_test.is_file():
            return results, None
        all_ids = [json.loads(line)["question_id"] for line in open(full_test) if line.strip()]
        return pad_vqav2_submission(results, all_ids)

    def score(self, refs, results, protocol, partial, meteor):
        by = score_vqav2_protocols(refs[0], refs[1], results, PROTOCOLS, allow_partial=partial)
        return self._both_protocols(by, protocol, partial, results)


class GQATask(TaskSpec):
    def reference_ids(self, refs):
        return {str(k) for k in _json_object(refs[0], "GQA questions")}

    def to_results(self, answers, submission=False, protocol="official"):
        post = protocol == "llava" and submission
        return [
            {"questionId": str(a["question_id"]), "prediction": llava_gqa_prediction(a["text"]) if post else a["text"]}
            for a in answers
        ]

    def has_answers(self, refs):
        """testdev/test question files without answers are submission-only."""
        if not super().has_answers(refs):
            return False
        qs = json.loads(refs[0].read_text())
        return bool(qs) and all(isinstance(q, dict) and isinstance(q.get("answer"), str) for q in qs.values())

    def score(self, refs, results, protocol, partial, meteor):
        by = score_gqa_protocols(refs[0], results, PROTOCOLS, allow_partial=partial)
        return self._both_protocols(by, protocol, partial, results)


TASKS: dict[str, TaskSpec] = {
    # LLaVA-1.5 prompts answer VQA/GQA with "a single word or phrase": a few tokens suffice.
    "vqav2": VQAv2Task("vqav2", "val", 16, ("{split}_questions.json", "{split}_annotations.json"), "overall"),
    "gqa": GQATask("gqa", "testdev", 16, ("{split}_questions.json",), "accuracy"),
    "coco": CocoTask("coco", "test", 48, ("{split}_annotations.json",), "CIDEr", captions=True),
}


def get_task(name: str) -> TaskSpec:
    """The spec of task `name`; ValueError listing the known tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}") from None
