"""GQA: exact match over balanced questions; protocol llava = rstrip('.') + lower (hand-computed)."""

import json

import pytest

from llava_structlora.metrics import MetricInputError, score_gqa


def _q(answer, structural="query", balanced=True):
    return {
        "imageId": "n1",
        "question": "?",
        "answer": answer,
        "fullAnswer": answer + ".",
        "isBalanced": balanced,
        "types": {"structural": structural, "semantic": "attr", "detailed": "x"},
    }


@pytest.fixture
def files(tmp_path):
    qs = {
        "1": _q("left"),
        "2": _q("yes", "verify"),
        "3": _q("red"),
        "4": _q("no", "logical"),
        "5": _q("blue", balanced=False),
    }
    res = [
        {"questionId": "1", "prediction": "left"},
        {"questionId": "2", "prediction": "Yes."},
        {"questionId": "3", "prediction": "red."},
        {"questionId": "4", "prediction": "yes"},
        {"questionId": "5", "prediction": "blue"},
    ]
    q, r = tmp_path / "q.json", tmp_path / "r.json"
    q.write_text(json.dumps(qs))
    r.write_text(json.dumps(res))
    return q, r


def test_official_exact_match(files):
    out = score_gqa(*files)
    # balanced: 1 ok, 2 "Yes." != "yes", 3 "red." != "red", 4 wrong -> 1/4; unbalanced 5 ignored
    assert out["accuracy"] == pytest.approx(25.0) and out["n"] == 4
    assert out["open"] == pytest.approx(50.0) and out["binary"] == pytest.approx(0.0)


def test_llava_protocol_strips_period_and_lowercases(files):
    out = score_gqa(*files, protocol="llava")
    assert out["accuracy"] == pytest.approx(75.0)  # 1, 2, 3 right; 4 wrong
    assert (out["open"], out["binary"]) == (pytest.approx(100.0), pytest.approx(50.0))


def test_missing_prediction_is_an_error(tmp_path, files):
    q, r = files
    r.write_text(json.dumps([{"questionId": "1", "prediction": "left"}]))
    with pytest.raises(MetricInputError, match="3 reference ids have no result"):
        score_gqa(q, r)
    out = score_gqa(q, r, allow_partial=True)
    assert out["n"] == 1 and out["accuracy"] == 100.0 and out["n_missing"] == 3


def test_unanswerable_questions_file(tmp_path):
    q, r = tmp_path / "q.json", tmp_path / "r.json"
    q.write_text(json.dumps({"1": {"question": "?", "imageId": "n1"}}))
    r.write_text("[]")
    with pytest.raises(MetricInputError, match="needs a string 'answer'"):
        score_gqa(q, r)
