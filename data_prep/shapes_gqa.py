"""GQA-style question families: relational, choose, logical and compare questions with
`fullAnswer`, structural/semantic/detailed types and a small semantic program.

Object references in programs are written "circle (o2)" (name + scene-local object id), the
shape of the official "lawn (2300285)" arguments.
"""

from __future__ import annotations

import random
from typing import Optional

from data_prep.shapes_questions import (
    QA,
    YES_NO,
    Family,
    absent_conjunction,
    balanced_conjunction,
    unique_relation,
    verify_relation,
)
from data_prep.shapes_scene import (
    COLORS,
    REL_PHRASE,
    SHAPES,
    Scene,
    holds,
    ref,
    unique_shape_objects,
)


def _oid(scene: Scene, o) -> str:
    return f"{o.shape} (o{scene.objects.index(o)})"


def _yn(want: bool) -> str:
    return "yes" if want else "no"


def g_query_color(rng: random.Random, scene: Scene) -> Optional[QA]:
    objs = unique_shape_objects(scene)
    if not objs:
        return None
    o = rng.choice(objs)
    prog = (("select", (), _oid(scene, o)), ("query", (0,), "color"))
    return QA(
        "queryColor",
        f"What color is the {o.shape}?",
        o.color,
        "other",
        "what color is the",
        COLORS,
        f"The {o.shape} is {o.color}.",
        "query",
        "attr",
        prog,
    )


def g_rel_shape(rng: random.Random, scene: Scene) -> Optional[QA]:
    got = unique_relation(rng, scene)
    if got is None:
        return None
    a, rel, b = got
    rp, rb = REL_PHRASE[rel], ref(b, scene)
    prog = (("select", (), _oid(scene, b)), ("relate", (0,), f"shape,{rp},s ({a.shape})"), ("query", (1,), "name"))
    return QA(
        "relS",
        f"What shape is {rp} the {rb}?",
        a.shape,
        "other",
        "what shape is",
        SHAPES,
        f"The shape {rp} the {rb} is a {a.shape}.",
        "query",
        "rel",
        prog,
    )


def g_rel_color(rng: random.Random, scene: Scene) -> Optional[QA]:
    got = unique_relation(rng, scene)
    if got is None:
        return None
    a, rel, b = got
    rp, rb = REL_PHRASE[rel], ref(b, scene)
    prog = (("select", (), _oid(scene, b)), ("relate", (0,), f"shape,{rp},s ({a.shape})"), ("query", (1,), "color"))
    return QA(
        "relColor",
        f"What color is the shape {rp} the {rb}?",
        a.color,
        "other",
        "what color is the",
        COLORS,
        f"The {a.shape} is {a.color}.",
        "query",
        "rel",
        prog,
    )


def g_verify_rel(rng: random.Random, scene: Scene) -> Optional[QA]:
    got = verify_relation(rng, scene)
    if got is None:
        return None
    a, rel, b, want = got
    ra, rb = ref(a, scene), ref(b, scene)
    truth = rel if want else next(r for r in ("left", "right", "above", "below") if holds(r, a, b))
    full = f"{'Yes' if want else 'No'}, the {ra} is {REL_PHRASE[truth]} the {rb}."
    prog = (("select", (), _oid(scene, a)), ("verify rel", (0,), f"{_oid(scene, b)},{REL_PHRASE[rel]},o"))
    return QA(
        "verifyRel",
        f"Is the {ra} {REL_PHRASE[rel]} the {rb}?",
        _yn(want),
        "yes/no",
        "is the",
        YES_NO,
        full,
        "verify",
        "rel",
        prog,
    )


def g_choose_attr(rng: random.Random, scene: Scene) -> Optional[QA]:
    objs = unique_shape_objects(scene)
    if not objs:
        return None
    o = rng.choice(objs)
    other = rng.choice([c for c in COLORS if c != o.color])
    c1, c2 = (o.color, other) if rng.random() < 0.5 else (other, o.color)
    prog = (("select", (), _oid(scene, o)), ("choose color", (0,), f"{c1}|{c2}"))
    return QA(
        "chooseAttr",
        f"Is the {o.shape} {c1} or {c2}?",
        o.color,
        "other",
        "is the",
        (c1, c2),
        f"The {o.shape} is {o.color}.",
        "choose",
        "attr",
        prog,
    )


def g_choose_rel(rng: random.Random, scene: Scene) -> Optional[QA]:
    if len(scene.objects) < 2:
        return None
    a, b = rng.sample(list(scene.objects), 2)
    axis = [p for p in (("left", "right"), ("above", "below")) if any(holds(r, a, b) for r in p)]
    pair = rng.choice(axis)
    ans = pair[0] if holds(pair[0], a, b) else pair[1]
    ra, rb = ref(a, scene), ref(b, scene)
    q = (
        f"Is the {ra} to the left or to the right of the {rb}?"
        if pair[0] == "left"
        else f"Is the {ra} above or below the {rb}?"
    )
    prog = (("select", (), _oid(scene, b)), ("choose rel", (0,), f"{ra},{pair[0]}|{pair[1]},s"))
    return QA(
        "chooseRel", q, ans, "other", "is the", pair, f"The {ra} is {REL_PHRASE[ans]} the {rb}.", "choose", "rel", prog
    )


def g_logic_or(rng: random.Random, scene: Scene) -> Optional[QA]:
    have = {(o.color, o.shape) for o in scene.objects}
    want = rng.random() < 0.5
    first = rng.choice(sorted(have)) if want else absent_conjunction(rng, scene)
    second = absent_conjunction(rng, scene)
    x, y = (first, second) if rng.random() < 0.5 else (second, first)
    nx, ny = f"{x[0]} {x[1]}", f"{y[0]} {y[1]}"
    full = f"Yes, there is a {first[0]} {first[1]}." if want else f"No, there is no {nx} or {ny}."
    prog = (
        ("select", (), x[1]),
        ("filter color", (0,), x[0]),
        ("exist", (1,), "?"),
        ("select", (), y[1]),
        ("filter color", (3,), y[0]),
        ("exist", (4,), "?"),
        ("or", (2, 5), ""),
    )
    return QA(
        "logicOr",
        f"Is there a {nx} or a {ny}?",
        _yn(want),
        "yes/no",
        "is there a",
        YES_NO,
        full,
        "logical",
        "obj",
        prog,
    )


def g_logic_and(rng: random.Random, scene: Scene) -> Optional[QA]:
    present = sorted({o.shape for o in scene.objects})
    absent = [s for s in SHAPES if s not in present]
    want = rng.random() < 0.5 or not absent
    if want and len(present) < 2:
        return None  # retried with another draw: keeps yes/no balanced
    s1, s2 = rng.sample(present, 2) if want else (rng.choice(present), rng.choice(absent))
    if rng.random() < 0.5:
        s1, s2 = s2, s1
    missing = s2 if s2 in absent else s1
    full = f"Yes, there are both a {s1} and a {s2}." if want else f"No, there is no {missing}."
    prog = (("select", (), s1), ("exist", (0,), "?"), ("select", (), s2), ("exist", (2,), "?"), ("and", (1, 3), ""))
    return QA(
        "logicAnd",
        f"Are there both a {s1} and a {s2}?",
        _yn(want),
        "yes/no",
        "are there",
        YES_NO,
        full,
        "logical",
        "obj",
        prog,
    )


def g_compare(rng: random.Random, scene: Scene) -> Optional[QA]:
    pairs = [(a, b) for a in scene.objects for b in scene.objects if a.size == "large" and b.size == "small"]
    if not pairs:
        return None
    big, small = rng.choice(pairs)
    x, y = (big, small) if rng.random() < 0.5 else (small, big)
    rx, ry, rbig = ref(x, scene), ref(y, scene), ref(big, scene)
    if rx == ry:  # same shape twice: fall back to colour names
        rx, ry, rbig = f"{x.color} {x.shape}", f"{y.color} {y.shape}", f"{big.color} {big.shape}"
    prog = (("select", (), _oid(scene, x)), ("select", (), _oid(scene, y)), ("bigger", (0, 1), ""))
    return QA(
        "compare",
        f"Which is bigger, the {rx} or the {ry}?",
        rbig,
        "other",
        "which is",
        tuple(sorted({rx, ry})),
        f"The {rbig} is bigger.",
        "compare",
        "attr",
        prog,
    )


def g_exist(rng: random.Random, scene: Scene) -> Optional[QA]:
    want, c, s = balanced_conjunction(rng, scene)
    full = f"Yes, there is a {c} {s}." if want else f"No, there is no {c} {s}."
    prog = (("select", (), s), ("filter color", (0,), c), ("exist", (1,), "?"))
    return QA(
        "exist",
        f"Is there a {c} {s} in the image?",
        _yn(want),
        "yes/no",
        "is there a",
        YES_NO,
        full,
        "verify",
        "obj",
        prog,
    )


GQA_FAMILIES: dict[str, tuple[Family, float]] = {
    "queryColor": (g_query_color, 0.08),
    "relS": (g_rel_shape, 0.14),
    "relColor": (g_rel_color, 0.12),
    "verifyRel": (g_verify_rel, 0.14),
    "chooseAttr": (g_choose_attr, 0.08),
    "chooseRel": (g_choose_rel, 0.12),
    "logicOr": (g_logic_or, 0.08),
    "logicAnd": (g_logic_and, 0.08),
    "compare": (g_compare, 0.08),
    "exist": (g_exist, 0.08),
}


def gqa_record(qa: QA, image_id: str, qid: str) -> dict:
    """The official balanced-questions value for one question."""
    sem = [{"operation": op, "dependencies": list(deps), "argument": arg} for op, deps, arg in qa.program]
    sem_str = " ".join(f"{s['operation']}: {s['argument']} ->" for s in sem).rstrip(" ->")
    return {
        "semantic": sem,
        "entailed": [],
        "equivalent": [qid],
        "question": qa.question,
        "imageId": image_id,
        "isBalanced": True,
        "groups": {"global": None if qa.answer_type != "other" else qa.family, "local": f"{qa.family}-{qa.answer}"},
        "answer": qa.answer,
        "semanticStr": sem_str,
        "annotations": {"answer": {}, "question": {}, "fullAnswer": {}},
        "types": {"detailed": qa.family, "semantic": qa.semantic, "structural": qa.structural},
        "fullAnswer": qa.full_answer,
    }
