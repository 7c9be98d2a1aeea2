"""Chance levels and vocabulary coverage of a generated shapes world.

Chance levels are what a blind model can reach: per question family, (a) the uniform guess
over the family's answer space (for choose/compare questions: over the two options the question
names) and (b) the prior baseline: always answering the family's most frequent *training*
answer, scored on the evaluation split (exact match, and for VQA-style sets also the official
min(1, #humans/3) accuracy over the 10 answers). `chance` = max(uniform, prior exact match):
report a base's accuracy per family against it.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from data_prep.shapes_text import _norm, words

# dataset -> (training splits, evaluation splits, which questions)
DATASETS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "pretrain": (("pretrain_train",), ("pretrain_val",), "vqa"),
    "vqav2": (("train",), ("val", "test"), "vqa"),
    "gqa": (("train",), ("val", "test"), "gqa"),
}


def vqa_accuracy(pred: str, answers: list[str]) -> float:
    """Official VQA rule: average over the 10 leave-one-out subsets of min(1, matches / 3)."""
    p = _norm(pred)
    hits = [_norm(a) == p for a in answers]
    total = sum(hits)
    return sum(min(1.0, (total - h) / 3) for h in hits) / len(hits)


def _records(items, splits, which):
    """(family, answer_type, answer, space, human answers or None) of the given splits."""
    for s in splits:
        for it in items.get(s, []):
            if which == "vqa":
                for v in it.vqa:
                    yield v.qa.family, v.qa.answer_type, v.mc_answer, v.qa.space, [a["answer"] for a in v.answers]
            else:
                for qa in it.gqa:
                    yield qa.family, qa.structural, qa.answer, qa.space, None


def _chance(items, train, evals, which) -> dict:
    prior: dict[str, Counter] = defaultdict(Counter)
    for fam, _, ans, _, _ in _records(items, train, which):
        prior[fam][ans] += 1
    rows: dict[str, dict] = defaultdict(lambda: {"n": 0, "exact": 0.0, "vqa": 0.0, "uniform": 0.0})
    groups: dict[str, Counter] = defaultdict(Counter)  # aggregate row -> questions per family
    for fam, atype, ans, space, humans in _records(items, evals, which):
        guess = prior[fam].most_common(1)[0][0] if prior[fam] else ""
        for key in (f"family/{fam}", f"type/{atype}", "overall"):
            r = rows[key]
            r["n"] += 1
            r["exact"] += float(guess == ans)
            r["uniform"] += 1.0 / max(1, len(space))
            r["vqa"] += vqa_accuracy(guess, humans) if humans is not None else float(guess == ans)
            groups[key][fam] += 1
            if key.startswith("family/"):
                r["train_majority"] = guess
                r["n_train_answers"] = len(prior[fam])
    out = {}
    for key, r in sorted(rows.items()):
        n = max(1, r["n"])
        out[key] = {
            **{k: v for k, v in r.items() if k not in ("exact", "vqa", "uniform")},
            "prior_exact": round(r["exact"] / n, 4),
            "prior_vqa_acc": round(r["vqa"] / n, 4),
            "uniform": round(r["uniform"] / n, 4),
        }
    for key in out:  # a blind model picks the better strategy per family
        fams = groups[key]
        best = {f: max(out[f"family/{f}"]["uniform"], out[f"family/{f}"]["prior_exact"]) for f in fams}
        out[key]["chance"] = round(sum(best[f] * k for f, k in fams.items()) / sum(fams.values()), 4)
    return out


def coverage(items) -> dict:
    """Downstream target words (captions + answers) that pretraining outputs never produce."""
    pre, down = set(), set()
    for it in items.get("pretrain_train", []):
        pre.update(w for c in it.captions for w in words(c))
        pre.update(w for v in it.vqa for w in words(v.mc_answer))
    for s in ("train", "restval", "val", "test", "testdev"):
        for it in items.get(s, []):
            down.update(w for c in it.captions for w in words(c))
            down.update(w for v in it.vqa for w in words(v.mc_answer))
            down.update(w for qa in it.gqa for w in words(qa.answer))
    return {"pretrain_vocab": sorted(pre), "downstream_vocab": sorted(down), "uncovered_words": sorted(down - pre)}


def world_stats(items) -> dict:
    sizes = {
        s: {
            "images": len(its),
            "captions": sum(len(i.captions) for i in its),
            "vqa_questions": sum(len(i.vqa) for i in its),
            "gqa_questions": sum(len(i.gqa) for i in its),
            "one_object_share": round(sum(len(i.scene.objects) == 1 for i in its) / max(1, len(its)), 3),
        }
        for s, its in items.items()
    }
    chance = {name: _chance(items, tr, ev, which) for name, (tr, ev, which) in DATASETS.items()}
    return {"sizes": sizes, "chance": chance, **coverage(items)}


def format_stats(stats: dict, preset) -> str:
    lines = [
        f"shapes world preset={preset.name} image_size={preset.image_size} grid={preset.grid} "
        f"max_objects={preset.max_objects}",
        "",
        "split            images captions  vqa_q  gqa_q  1-obj",
    ]
    for s, r in stats["sizes"].items():
        lines.append(
            f"{s:<16}{r['images']:>7}{r['captions']:>9}{r['vqa_questions']:>7}"
            f"{r['gqa_questions']:>7}{r['one_object_share']:>7.2f}"
        )
    for name, rows in stats["chance"].items():
        lines += [
            "",
            f"[{name}] chance levels on its evaluation split "
            "(prior = always the family's most frequent training answer)",
            f"{'family/type':<26}{'n':>6}{'uniform':>9}{'prior':>8}{'prior_vqa':>10}{'CHANCE':>8}  majority",
        ]
        for key, r in rows.items():
            lines.append(
                f"{key:<26}{r['n']:>6}{r['uniform']:>9.3f}{r['prior_exact']:>8.3f}"
                f"{r['prior_vqa_acc']:>10.3f}{r['chance']:>8.3f}  {r.get('train_majority', '')}"
            )
    lines += [
        "",
        f"downstream vocabulary ({len(stats['downstream_vocab'])} words) not covered by "
        f"pretraining outputs: {stats['uncovered_words'] or 'none'}",
    ]
    return "\n".join(lines)
