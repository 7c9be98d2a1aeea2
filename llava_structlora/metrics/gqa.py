"""GQA accuracy with the rules of the official `eval.py` (balanced questions).

Official: for every question with `isBalanced`, correct = (prediction == answer), exact string
match, no normalization; `binary` = structural types other than "query", `open` = "query".
Protocol `llava` first applies what LLaVA's `convert_gqa_for_eval.py` does to predictions:
`text.rstrip('.').lower()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import MetricInputError, load_json, load_results, match_ids

PROTOCOLS = ("official", "llava")


def llava_gqa_prediction(text: str) -> str:
    """LLaVA's convert_gqa_for_eval.py: strip trailing periods, lowercase."""
    return text.rstrip(".").lower()


def load_gqa_questions(path: str | Path) -> dict[str, dict]:
    """Official balanced-questions dict {questionId: {...,'answer', 'isBalanced', 'types'}}."""
    data = load_json(path, "questions")
    if not isinstance(data, dict) or not data:
        raise MetricInputError(
            f"questions file {path}: expected the official GQA object "
            f"{{questionId: question}}, got {type(data).__name__}"
        )
    for qid, q in data.items():
        if not isinstance(q, dict) or not isinstance(q.get("answer"), str):
            raise MetricInputError(
                f"questions file {path}, question {qid!r}: needs a string 'answer' "
                f"(testdev-without-answers cannot be scored; submit it instead)"
            )
    return data


def _structural(q: dict) -> str | None:
    types = q.get("types")
    return types.get("structural") if isinstance(types, dict) else None


def score_gqa(
    questions: str | Path, results: str | Path, protocol: str = "official", allow_partial: bool = False
) -> dict[str, Any]:
    """Accuracy (percent) over the balanced questions, plus the binary/open split when typed."""
    return score_gqa_protocols(questions, results, (protocol,), allow_partial)[protocol]


def score_gqa_protocols(
    questions: str | Path, results: str | Path, protocols: tuple[str, ...] = PROTOCOLS, allow_partial: bool = False
) -> dict[str, dict]:
    """``score_gqa`` under several protocols, reading the questions file once."""
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {bad[0]!r}")
    qs = load_gqa_questions(questions)
    balanced = [qid for qid, q in qs.items() if q.get("isBalanced", True)]
    pairs = [(str(k), v) for k, v in load_results(results, "questionId", "prediction")]
    # Unbalanced questions are not scored but are not "unknown" either.
    scored_pairs = [(k, v) for k, v in pairs if k not in qs or qs[k].get("isBalanced", True)]
    match = match_ids(scored_pairs, balanced, results, allow_partial)
    if not match.ids:
        raise MetricInputError(f"results file {results}: no result matches a balanced question in {questions}")
    return {p: _accuracy(qs, match, p, allow_partial) for p in protocols}


def _accuracy(qs: dict, match, protocol: str, allow_partial: bool) -> dict[str, Any]:
    scores: dict[str, list[float]] = {"accuracy": [], "binary": [], "open": []}
    for qid in match.ids:
        pred = match.results[qid]
        if protocol == "llava":
            pred = llava_gqa_prediction(pred)
        score = float(pred == qs[qid]["answer"])
        scores["accuracy"].append(score)
        structural = _structural(qs[qid])
        if structural is not None:
            scores["open" if structural == "query" else "binary"].append(score)
    out: dict[str, Any] = {"accuracy": 100 * sum(scores["accuracy"]) / len(scores["accuracy"])}
    for k in ("binary", "open"):
        if scores[k]:
            out[k] = 100 * sum(scores[k]) / len(scores[k])
    out.update({"n": len(match.ids), "protocol": protocol})
    if allow_partial:
        out.update(match.counts())
    return out
