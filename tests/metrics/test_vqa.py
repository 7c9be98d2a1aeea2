"""VQAv2 accuracy: leave-one-out averaging and when the official code normalizes (hand-computed)."""

import json

import pytest

from llava_structlora.metrics import MetricInputError, score_vqav2, vqa_question_accuracy


def recs(*answers):
    """Human answer records as released (distinct answer_id), in the scorer's tuple form."""
    return [(a, (("answer_confidence", "yes"), ("answer_id", i + 1))) for i, a in enumerate(answers)]


def test_unanimous_answers_are_not_normalized():
    gts = recs(*["yes"] * 10)
    assert vqa_question_accuracy("yes", gts) == 1.0
    assert vqa_question_accuracy(" yes\n", gts) == 1.0  # whitespace is always cleaned
    assert vqa_question_accuracy("Yes", gts) == 0.0  # raw compare when humans agree
    assert vqa_question_accuracy("yes.", gts) == 0.0


def test_non_unanimous_answers_normalize_both_sides():
    gts = recs(*["2"] * 9, "two")
    # all ten normalize to "2"; each leave-one-out subset has 9 matches -> 1
    assert vqa_question_accuracy("Two.", gts) == 1.0
    assert vqa_question_accuracy("the 2", gts) == 1.0


def test_leave_one_out_partial_credit():
    # 2 x red, 8 x blue, predict red: leaving a red out -> 1/3 (2 subsets),
    # leaving a blue out -> 2/3 (8 subsets): (2/3 + 16/3) / 10 = 0.6
    assert vqa_question_accuracy("red", recs("red", "red", *["blue"] * 8)) == pytest.approx(0.6)
    # 3 x red: leaving a red out -> 2/3 (3 subsets), a blue out -> 1 (7): (2 + 7) / 10 = 0.9
    assert vqa_question_accuracy("red", recs(*["red"] * 3, *["blue"] * 7)) == pytest.approx(0.9)
    assert vqa_question_accuracy("green", recs(*["red"] * 3, *["blue"] * 7)) == 0.0


def test_numbers_with_punctuation_inside():
    gts = recs(*["1,000"] * 5, *["1000"] * 5)
    assert vqa_question_accuracy("1000", gts) == 1.0  # "1,000" -> "1000" on both sides
    gts = recs(*["3.5"] * 4, *["three"] * 6)
    assert vqa_question_accuracy("3.5", gts) == pytest.approx((4 * 1 + 6 * 1) / 10)
    assert vqa_question_accuracy("35", gts) == 0.0


def test_records_without_ids_are_removed_together():
    # vqaEval.py drops every record equal to the left-out one (dict comparison); without
    # answer_id equal answers are equal records: red out -> 0 matches, blue out -> 3 -> 1.
    gts = [("red", ())] * 3 + [("blue", ())] * 7
    assert vqa_question_accuracy("red", gts) == pytest.approx(0.7)


def _write_vqa(tmp_path, items, results):
    qs = {"questions": [{"question_id": q, "image_id": 1, "question": "?"} for q, *_ in items]}
    anns = {
        "annotations": [
            {
                "question_id": q,
                "image_id": 1,
                "answer_type": t,
                "question_type": "what",
                "multiple_choice_answer": a[0],
                "answers": [{"answer": x, "answer_confidence": "yes", "answer_id": i + 1} for i, x in enumerate(a)],
            }
            for q, t, a in items
        ]
    }
    paths = [tmp_path / n for n in ("q.json", "a.json", "r.json")]
    for p, obj in zip(paths, (qs, anns, results)):
        p.write_text(json.dumps(obj))
    return paths


ITEMS = [(1, "yes/no", ["yes"] * 10), (2, "number", ["2"] * 9 + ["two"]), (3, "other", ["red", "red"] + ["blue"] * 8)]


def test_score_vqav2_overall_and_per_type(tmp_path):
    q, a, r = _write_vqa(
        tmp_path,
        ITEMS,
        [{"question_id": 1, "answer": "Yes"}, {"question_id": 2, "answer": "two"}, {"question_id": 3, "answer": "red"}],
    )
    out = score_vqav2(q, a, r)
    # official: 0 (raw "Yes"), 1, 0.6 -> 53.33
    assert out["overall"] == 53.33 and out["n"] == 3
    assert out["per_answer_type"] == {"number": 100.0, "other": 60.0, "yes/no": 0.0}
    llava = score_vqav2(q, a, r, protocol="llava")  # EvalAI processor lowercases "Yes"
    assert llava["overall"] == 86.67 and llava["per_answer_type"]["yes/no"] == 100.0


def test_ids_missing_unknown_duplicate(tmp_path):
    res = [
        {"question_id": 1, "answer": "yes"},
        {"question_id": 1, "answer": "no"},
        {"question_id": 2, "answer": "2"},
        {"question_id": 99, "answer": "x"},
    ]
    q, a, r = _write_vqa(tmp_path, ITEMS, res)
    with pytest.raises(MetricInputError) as e:
        score_vqav2(q, a, r)
    msg = str(e.value)
    assert "1 reference ids have no result (e.g. 3)" in msg and "99" in msg and "more than once" in msg
    out = score_vqav2(q, a, r, allow_partial=True)  # only id 2 is answered exactly once
    assert (out["n"], out["overall"], out["n_missing"], out["n_unknown"], out["n_duplicate"]) == (1, 100.0, 1, 1, 1)


def test_bad_records_name_the_file(tmp_path):
    q, a, r = _write_vqa(tmp_path, ITEMS, [{"question_id": 1, "answer": 3}])
    with pytest.raises(MetricInputError, match=r"r\.json, record 0 .*must be a string"):
        score_vqav2(q, a, r)
    a.write_text("{not json")
    with pytest.raises(MetricInputError, match="a.json is not valid JSON"):
        score_vqav2(q, a, r)
