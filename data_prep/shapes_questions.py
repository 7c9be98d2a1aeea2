"""Question families of the shapes world (pretraining and VQAv2-style downstream).

Every family is a function `(rng, scene) -> QA | None` (None: not askable on this scene).
Yes/no families first draw the target answer (50/50) and then build the question, so the
answer prior is balanced and only the image tells the two apart. Answers are always
derivable from the image alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

from data_prep.shapes_scene import (
    COLORS,
    REL_PHRASE,
    SHAPES,
    SIZES,
    Obj,
    Scene,
    holds,
    position,
    ref,
    true_relations,
    unique_shape_objects,
)

DIRECTIONS: tuple[str, ...] = ("left", "right", "above", "below")
POSITIONS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
COUNTS: tuple[str, ...] = ("0", "1", "2", "3", "4", "5", "6")


@dataclass(frozen=True)
class QA:
    """One question; GQA fields are empty for VQA-style families."""

    family: str
    question: str
    answer: str
    answer_type: str  # VQAv2: "yes/no" | "number" | "other"
    question_type: str  # VQAv2 question-type prefix, e.g. "what color is the"
    space: tuple[str, ...]  # the family's answer space (wrong answers, chance levels)
    full_answer: str = ""
    structural: str = ""
    semantic: str = ""
    program: tuple = field(default=())  # GQA ops: ((operation, (deps...), argument), ...)


Family = Callable[[random.Random, Scene], Optional[QA]]
YES_NO = ("yes", "no")


def plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def absent_conjunction(rng: random.Random, scene: Scene) -> tuple[str, str]:
    """A (colour, shape) not in the scene; hard negative (colour or shape present) when possible."""
    have = {(o.color, o.shape) for o in scene.objects}
    hard = [(o.color, s) for o in scene.objects for s in SHAPES if (o.color, s) not in have]
    hard += [(c, o.shape) for o in scene.objects for c in COLORS if (c, o.shape) not in have]
    pool = hard or [(c, s) for c in COLORS for s in SHAPES if (c, s) not in have]
    return rng.choice(sorted(pool))


def balanced_conjunction(rng: random.Random, scene: Scene) -> tuple[bool, str, str]:
    """(present, colour, shape): an object's half of the time, else an absent (hard negative) conjunction."""
    if rng.random() < 0.5:
        o = rng.choice(scene.objects)
        return True, o.color, o.shape
    return (False, *absent_conjunction(rng, scene))


def present_or_absent(rng: random.Random, present: set[str], values: tuple[str, ...]) -> Optional[tuple[bool, str]]:
    """(present, value): one of `present` half of the time, else one of `values` absent (None: none is)."""
    have = sorted(present)
    absent = [v for v in values if v not in have]
    want = rng.random() < 0.5
    if not want and not absent:
        return None
    return want, (rng.choice(have) if want else rng.choice(absent))


def unique_relation(rng: random.Random, scene: Scene) -> Optional[tuple[Obj, str, Obj]]:
    """(target, rel, anchor) such that exactly one object stands in `rel` to the anchor."""
    cands = []
    for b in scene.objects:
        for rel in DIRECTIONS:
            sat = [a for a in scene.objects if a is not b and holds(rel, a, b)]
            if len(sat) == 1:
                cands.append((sat[0], rel, b))
    return rng.choice(cands) if cands else None


def verify_relation(rng: random.Random, scene: Scene) -> Optional[tuple[Obj, str, Obj, bool]]:
    """Ordered pair + relation, true or false with equal probability."""
    if len(scene.objects) < 2:
        return None
    a, b = rng.sample(list(scene.objects), 2)
    true = true_relations(a, b)
    want = rng.random() < 0.5
    rel = rng.choice(true) if want else rng.choice([r for r in DIRECTIONS if r not in true])
    return a, rel, b, want


# ---------------------------------------------------------------- pretraining families
def p_color(rng: random.Random, scene: Scene) -> Optional[QA]:
    objs = unique_shape_objects(scene)
    if not objs:
        return None
    o = rng.choice(objs)
    return QA("color", f"what color is the {o.shape}?", o.color, "other", "what color is the", COLORS)


def p_shape(rng: random.Random, scene: Scene) -> Optional[QA]:
    o = rng.choice(scene.objects)
    return QA("shape", f"what shape is {o.color}?", o.shape, "other", "what shape is", SHAPES)


def p_exist_shape(rng: random.Random, scene: Scene) -> Optional[QA]:
    got = present_or_absent(rng, {o.shape for o in scene.objects}, SHAPES)
    if got is None:
        return None
    want, s = got
    return QA("exist_shape", f"is there a {s}?", "yes" if want else "no", "yes/no", "is there a", YES_NO)


def p_exist_color(rng: random.Random, scene: Scene) -> Optional[QA]:
    got = present_or_absent(rng, {o.color for o in scene.objects}, COLORS)
    if got is None:
        return None
    want, c = got
    return QA("exist_color", f"is there a {c} shape?", "yes" if want else "no", "yes/no", "is there a", YES_NO)


def p_count_all(rng: random.Random, scene: Scene) -> Optional[QA]:
    return QA("count_all", "how many shapes are there?", str(len(scene.objects)), "number", "how many", COUNTS)


def p_count_shape(rng: random.Random, scene: Scene) -> Optional[QA]:
    # half the time a present shape: answers spread over 1..2 instead of mostly 0
    s = rng.choice(scene.objects).shape if rng.random() < 0.5 else rng.choice(SHAPES)
    n = sum(o.shape == s for o in scene.objects)
    return QA("count_shape", f"how many {plural(s)} are there?", str(n), "number", "how many", COUNTS)


def p_size(rng: random.Random, scene: Scene) -> Optional[QA]:
    o = rng.choice(scene.objects)
    return QA("size", f"what size is the {ref(o, scene)}?", o.size, "other", "what size is the", SIZES)


def p_where(rng: random.Random, scene: Scene) -> Optional[QA]:
    o = rng.choice(scene.objects)
    return QA("where", f"where is the {ref(o, scene)}?", position(o, scene.grid), "other", "where is the", POSITIONS)


def p_rel_verify(rng: random.Random, scene: Scene) -> Optional[QA]:
    got = verify_relation(rng, scene)
    if got is None:
        return None
    a, rel, b, want = got
    q = f"is the {ref(a, scene)} {REL_PHRASE[rel]} the {ref(b, scene)}?"
    return QA("rel_verify", q, "yes" if want else "no", "yes/no", "is the", YES_NO)


PRETRAIN_FAMILIES: dict[str, tuple[Family, float]] = {
    "color": (p_color, 0.18),
    "shape": (p_shape, 0.18),
    "exist_shape": (p_exist_shape, 0.12),
    "exist_color": (p_exist_color, 0.10),
    "count_all": (p_count_all, 0.12),
    "count_shape": (p_count_shape, 0.08),
    "size": (p_size, 0.10),
    "where": (p_where, 0.07),
    "rel_verify": (p_rel_verify, 0.05),
}


# ---------------------------------------------------------------- VQAv2 downstream families
def v_exist_conj(rng: random.Random, scene: Scene) -> Optional[QA]:
    want, c, s = balanced_conjunction(rng, scene)
    return QA("exist_conj", f"is there a {c} {s}?", "yes" if want else "no", "yes/no", "is there a", YES_NO)


def v_bigger(rng: random.Random, scene: Scene) -> Optional[QA]:
    """Balanced: 'yes' needs a (large, small) pair, drawn half of the time when one exists."""
    objs = list(scene.objects)
    yes_pairs = [(a, b) for a in objs for b in objs if (a.size, b.size) == ("large", "small")]
    no_pairs = [(a, b) for a in objs for b in objs if a is not b and (a.size, b.size) != ("large", "small")]
    want = rng.random() < 0.5
    if not (yes_pairs if want else no_pairs):
        return None  # retried with another draw: keeps yes/no balanced
    a, b = rng.choice(yes_pairs if want else no_pairs)
    return QA(
        "bigger_verify",
        f"is the {ref(a, scene)} bigger than the {ref(b, scene)}?",
        "yes" if want else "no",
        "yes/no",
        "is the",
        YES_NO,
    )


def v_count_large(rng: random.Random, scene: Scene) -> Optional[QA]:
    n = sum(o.size == "large" for o in scene.objects)
    return QA("count_large", "how many large shapes are there?", str(n), "number", "how many", COUNTS)


def v_rel_color(rng: random.Random, scene: Scene) -> Optional[QA]:
    got = unique_relation(rng, scene)
    if got is None:
        return None
    a, rel, b = got
    q = f"what color is the shape {REL_PHRASE[rel]} the {ref(b, scene)}?"
    return QA("rel_color", q, a.color, "other", "what color is the", COLORS)


def v_rel_shape(rng: random.Random, scene: Scene) -> Optional[QA]:
    got = unique_relation(rng, scene)
    if got is None:
        return None
    a, rel, b = got
    q = f"what shape is {REL_PHRASE[rel]} the {ref(b, scene)}?"
    return QA("rel_shape", q, a.shape, "other", "what shape is", SHAPES)


VQA_FAMILIES: dict[str, tuple[Family, float]] = {
    "exist_conj": (v_exist_conj, 0.14),
    "rel_verify": (p_rel_verify, 0.16),
    "bigger_verify": (v_bigger, 0.06),
    "count_all": (p_count_all, 0.08),
    "count_shape": (p_count_shape, 0.10),
    "count_large": (v_count_large, 0.06),
    "rel_color": (v_rel_color, 0.14),
    "rel_shape": (v_rel_shape, 0.10),
    "where": (p_where, 0.10),
    "color": (p_color, 0.06),
}


def sample_questions(
    rng: random.Random, scene: Scene, families: dict[str, tuple[Family, float]], k: int, max_tries: int = 40
) -> list[QA]:
    """Up to `k` distinct questions drawn by family weight (inapplicable draws are retried)."""
    names = list(families)
    weights = [families[n][1] for n in names]
    out: list[QA] = []
    seen: set[str] = set()
    for _ in range(max_tries):
        if len(out) == k:
            break
        qa = families[rng.choices(names, weights)[0]][0](rng, scene)
        if qa is not None and qa.question not in seen:
            seen.add(qa.question)
            out.append(qa)
    return out


__all__ = [
    "QA",
    "PRETRAIN_FAMILIES",
    "VQA_FAMILIES",
    "sample_questions",
    "absent_conjunction",
    "balanced_conjunction",
    "unique_relation",
    "verify_relation",
    "plural",
]
