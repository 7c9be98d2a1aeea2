"""Caption metrics equal pycocoevalcap's own PTBTokenizer + scorers on a tiny case."""

import json
import shutil

import pytest

from llava_structlora.metrics import MetricInputError, score_captions

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap needs Java")

REFS = {
    1: ["A red circle left of a blue square.", "a red circle and a blue square"],
    2: ["Two green triangles.", "two small green triangles on white"],
    3: ["a yellow star", "A big yellow star."],
}
PREDS = {1: "a red circle left of a blue square", 2: "three green triangles", 3: ""}


def _files(tmp_path, preds):
    anns = {
        "images": [{"id": i} for i in REFS],
        "annotations": [
            {"image_id": i, "id": 10 * i + k, "caption": c} for i, cs in REFS.items() for k, c in enumerate(cs)
        ],
    }
    a, r = tmp_path / "a.json", tmp_path / "r.json"
    a.write_text(json.dumps(anns))
    r.write_text(json.dumps(preds))
    return a, r


def _direct(preds):
    """pycocoevalcap called as COCOEvalCap does, without our code."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": c} for c in REFS[i]] for i in preds})
    res = tok.tokenize({i: [{"caption": c}] for i, c in preds.items()})
    return (
        Cider().compute_score(gts, res)[0],
        Bleu(4).compute_score(gts, res, verbose=0)[0][3],
        Rouge().compute_score(gts, res)[0],
    )


def test_matches_pycocoevalcap_directly(tmp_path):
    preds = {1: PREDS[1], 2: PREDS[2]}  # image 3 has no result: not scored, by design
    a, r = _files(tmp_path, [{"image_id": i, "caption": c} for i, c in preds.items()])
    out = score_captions(a, r, meteor=False)  # METEOR: see test_cli
    cider, bleu4, rouge = _direct(preds)
    assert out["n"] == 2
    assert out["CIDEr"] == pytest.approx(cider, abs=1e-4) and out["CIDEr"] > 0
    assert out["Bleu_4"] == pytest.approx(bleu4, abs=1e-9)
    assert out["ROUGE_L"] == pytest.approx(rouge, abs=1e-9)
    assert out["METEOR"] is None and "METEOR not computed" in out["notes"][0]


def test_empty_caption_scores_zero_not_crash(tmp_path):
    a, r = _files(tmp_path, [{"image_id": i, "caption": c} for i, c in PREDS.items()])
    out = score_captions(a, r, meteor=False)
    assert out["n"] == 3 and out["CIDEr"] > 0


def test_unknown_and_duplicate_images(tmp_path):
    a, r = _files(
        tmp_path,
        [
            {"image_id": 1, "caption": "x"},
            {"image_id": 1, "caption": "y"},
            {"image_id": 7, "caption": "z"},
            {"image_id": 2, "caption": "two green triangles"},
        ],
    )
    with pytest.raises(MetricInputError, match="not in the references.*more than once"):
        score_captions(a, r)
    out = score_captions(a, r, allow_partial=True, meteor=False)
    assert out["n"] == 1 and out["n_unknown"] == 1 and out["n_duplicate"] == 1
