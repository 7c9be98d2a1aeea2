"""COCO caption metrics through pycocoevalcap, as COCOEvalCap computes them.

We do what `COCOEvalCap.evaluate` does with `params['image_id'] = cocoRes.getImgIds()` (the usual
way to score a subset such as the Karpathy test split): PTBTokenizer on references and results,
then Bleu(4), METEOR, ROUGE_L and CIDEr (corpus-level over the scored images). SPICE is not run.
METEOR needs Java and 2 GB heap; if it cannot start, it is reported as null with a note.
"""

from __future__ import annotations

import contextlib
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from .common import MetricInputError, check_id, load_json, load_results, match_ids


def load_coco_references(path: str | Path) -> dict[Any, list[str]]:
    """image_id -> reference captions from an official COCO captions file."""
    data = load_json(path, "annotations")
    anns = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(anns, list) or not anns:
        raise MetricInputError(
            f"annotations file {path}: expected the official COCO captions object with a non-empty 'annotations' list"
        )
    refs: dict[Any, list[str]] = defaultdict(list)
    for i, a in enumerate(anns):
        if not isinstance(a, dict) or "image_id" not in a or not isinstance(a.get("caption"), str):
            raise MetricInputError(
                f"annotations file {path}, annotation {i}: needs 'image_id' and a string 'caption', got {str(a)[:200]}"
            )
        refs[check_id(a["image_id"], f"annotations file {path}, annotation {i}", "image_id")].append(a["caption"])
    return dict(refs)


def coco_caption_scores(refs: dict[Any, list[str]], preds: dict[Any, str], meteor: bool = True) -> dict[str, Any]:
    """Tokenize and score with pycocoevalcap; `preds` keys must be a subset of `refs` keys."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ids = list(preds)
    gts = {i: [{"caption": c} for c in refs[i]] for i in ids}
    res = {i: [{"caption": preds[i]}] for i in ids}
    out: dict[str, Any] = {}
    notes: list[str] = []
    # pycocoevalcap prints progress on stdout; our CLI's stdout is one JSON object.
    with contextlib.redirect_stdout(sys.stderr):
        tok = PTBTokenizer()
        gts_t, res_t = tok.tokenize(gts), tok.tokenize(res)
        res_t = {i: res_t.get(i, [""]) for i in ids}  # an empty caption may yield no line
        bleu, _ = Bleu(4).compute_score(gts_t, res_t, verbose=0)
        out.update({f"Bleu_{k + 1}": float(b) for k, b in enumerate(bleu)})
        out["METEOR"] = _meteor(gts_t, res_t, notes) if meteor else None
        if not meteor:
            notes.append("METEOR not computed (meteor=False)")
        out["ROUGE_L"] = float(Rouge().compute_score(gts_t, res_t)[0])
        out["CIDEr"] = float(Cider().compute_score(gts_t, res_t)[0])
    if notes:
        out["notes"] = notes
    return out


def _meteor(gts_t: dict, res_t: dict, notes: list[str]) -> float | None:
    try:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            return float(scorer.compute_score(gts_t, res_t)[0])
        finally:
            del scorer
    except Exception as e:  # Java missing, not enough memory for -Xmx2G, jar unreadable
        notes.append(f"METEOR skipped: {type(e).__name__}: {e}")
        return None


def score_captions(
    annotations: str | Path, results: str | Path, allow_partial: bool = False, meteor: bool = True
) -> dict[str, Any]:
    """Score the images present in the results; unknown or duplicated image ids are errors."""
    refs = load_coco_references(annotations)
    pairs = load_results(results, "image_id", "caption")
    result_ids = {k for k, _ in pairs}
    # Images without a result are by design not scored (a split is a subset of the references).
    present = [i for i in refs if i in result_ids]
    match = match_ids(pairs, present, results, allow_partial)
    if not match.ids:
        raise MetricInputError(f"results file {results}: no result matches an image in {annotations}")
    out = coco_caption_scores(refs, {i: match.results[i] for i in match.ids}, meteor)
    out["n"] = len(match.ids)
    if allow_partial:
        counts = match.counts()
        counts.pop("n_missing")
        out.update(counts)
    return out
