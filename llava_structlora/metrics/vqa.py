"""VQAv2 accuracy with the rules of the official evaluation code (GT-Vision-Lab/VQA vqaEval.py).

Per question (exactly as the official loop, current master):
1. strip '\\n', '\\t' and surrounding blanks from the 10 human answers and from the prediction;
2. only if the humans disagree (`len(set(gtAnswers)) > 1`), apply processPunctuation and
   processDigitArticle to the human answers AND to the prediction (a unanimous question compares
   the raw stripped strings: "Yes" vs ten "yes" scores 0 under `official`);
3. accuracy = mean over the 10 leave-one-out subsets of min(1, #matches / 3), where "leave one
   out" removes every answer record equal to the left-out one (records carry `answer_id`, so in
   released data exactly one is removed).
Overall and per-answer-type numbers are `round(100 * mean, 2)` as in `setAccuracy`.

Protocol `llava` first passes predictions through the EvalAI answer processor, as LLaVA's
`convert_vqav2_for_submission.py` does before uploading, then applies the same rules.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ijson

from .common import MetricInputError, check_id, load_results, match_ids
from .vqa_normalize import clean_whitespace, evalai_answer_processor, normalize

PROTOCOLS = ("official", "llava")
# One human answer as the official code compares it: (answer text, the record's other fields).
GtAnswer = tuple[str, tuple]


def vqa_question_accuracy(prediction: str, gt_answers: list[GtAnswer]) -> float:
    """Official accuracy of one prediction against the human answer records."""
    res = clean_whitespace(prediction)
    gts = [(clean_whitespace(a), rest) for a, rest in gt_answers]
    if len({a for a, _ in gts}) > 1:
        gts = [(normalize(a), rest) for a, rest in gts]
        res = normalize(res)
    accs = []
    for left_out in gts:
        matches = sum(1 for other in gts if other != left_out and other[0] == res)
        accs.append(min(1.0, matches / 3))
    return sum(accs) / len(accs)


def _iter_json_items(path: Path, prefix: str, what: str) -> Iterator[dict]:
    """Stream `prefix.item` objects (VQAv2 annotation files are hundreds of MB)."""
    if not path.is_file():
        raise MetricInputError(f"{what} file not found: {path}")
    from llava_structlora.utils.jsonio import JsonInputError, open_json_stream

    try:
        with open_json_stream(path) as f:
            try:
                yield from ijson.items(f, f"{prefix}.item")
            except ijson.JSONError as e:
                raise MetricInputError(f"{what} file {path} is not valid JSON near byte {f.offset}: {e}") from e
    except JsonInputError as e:
        raise MetricInputError(str(e)) from None


def _gt_answer(ans: Any, path: Path, i: int, qid: Any) -> GtAnswer:
    if not isinstance(ans, dict) or not isinstance(ans.get("answer"), str):
        raise MetricInputError(
            f"annotations file {path}, annotation {i} (question_id={qid}): "
            f"each answer must be an object with a string 'answer', got {str(ans)[:120]}"
        )
    return ans["answer"], tuple(sorted((k, v) for k, v in ans.items() if k != "answer"))


def load_vqa_annotations(path: str | Path) -> dict[int, tuple[str, list[GtAnswer]]]:
    """question_id -> (answer_type, human answer records), in file order."""
    path = Path(path)
    out: dict[int, tuple[str, list[GtAnswer]]] = {}
    for i, ann in enumerate(_iter_json_items(path, "annotations", "annotations")):
        qid = ann.get("question_id") if isinstance(ann, dict) else None
        if qid is None or not isinstance(ann.get("answers"), list) or not ann["answers"]:
            raise MetricInputError(
                f"annotations file {path}, annotation {i}: expected 'question_id' "
                f"and a non-empty 'answers' list, got {str(ann)[:200]}"
            )
        check_id(qid, f"annotations file {path}, annotation {i}", "question_id")
        if qid in out:
            raise MetricInputError(f"annotations file {path}, annotation {i}: duplicate question_id {qid}")
        answers = [_gt_answer(a, path, i, qid) for a in ann["answers"]]
        out[qid] = (str(ann.get("answer_type", "unknown")), answers)
    if not out:
        raise MetricInputError(f"annotations file {path}: no 'annotations' records found")
    return out


def load_vqa_question_ids(path: str | Path) -> set:
    path = Path(path)
    ids = set()
    for i, q in enumerate(_iter_json_items(path, "questions", "questions")):
        if not isinstance(q, dict) or "question_id" not in q:
            raise MetricInputError(f"questions file {path}, question {i}: missing 'question_id'")
        ids.add(check_id(q["question_id"], f"questions file {path}, question {i}", "question_id"))
    if not ids:
        raise MetricInputError(f"questions file {path}: no 'questions' records found")
    return ids


def score_vqav2(
    questions: str | Path,
    annotations: str | Path,
    results: str | Path,
    protocol: str = "official",
    allow_partial: bool = False,
) -> dict[str, Any]:
    """Overall and per-answer-type accuracy (percent, 2 decimals as the official code)."""
    return score_vqav2_protocols(questions, annotations, results, (protocol,), allow_partial)[protocol]


def score_vqav2_protocols(
    questions: str | Path,
    annotations: str | Path,
    results: str | Path,
    protocols: tuple[str, ...] = PROTOCOLS,
    allow_partial: bool = False,
) -> dict[str, dict]:
    """``score_vqav2`` under several protocols, reading the (large) annotation file once."""
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {bad[0]!r}")
    anns = load_vqa_annotations(annotations)
    qids = load_vqa_question_ids(questions)
    stray = [q for q in anns if q not in qids]
    if stray:
        raise MetricInputError(
            f"annotations file {annotations}: {len(stray)} question ids are not in "
            f"questions file {questions} (e.g. {stray[:5]}); are they the same split?"
        )
    pairs = load_results(results, "question_id", "answer")
    match = match_ids(pairs, anns.keys(), results, allow_partial)
    if not match.ids:
        raise MetricInputError(f"results file {results}: no result matches a question in {annotations}")
    return {p: _accuracy(anns, match, p, allow_partial) for p in protocols}


def _accuracy(anns: dict, match, protocol: str, allow_partial: bool) -> dict[str, Any]:
    per_q: list[float] = []
    per_type: dict[str, list[float]] = defaultdict(list)
    for qid in match.ids:
        pred = match.results[qid]
        if protocol == "llava":
            pred = evalai_answer_processor(pred)
        ans_type, gts = anns[qid]
        acc = vqa_question_accuracy(pred, gts)
        per_q.append(acc)
        per_type[ans_type].append(acc)
    out: dict[str, Any] = {
        "overall": round(100 * sum(per_q) / len(per_q), 2),
        "per_answer_type": {t: round(100 * sum(v) / len(v), 2) for t, v in sorted(per_type.items())},
        "n": len(per_q),
        "protocol": protocol,
    }
    if allow_partial:
        out.update(match.counts())
    return out
