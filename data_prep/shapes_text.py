"""Captions and human-like VQA answers of the shapes world.

Two caption styles:
- pretraining: object lists in reading order ("a red circle, a small blue square and a cross"),
  a share with absolute positions and a share with one relation, so that every word of
  the downstream captions is produced during pretraining (q/v LoRA cannot teach new words);
- downstream (COCO-style): one relational sentence per caption
  ("a small red circle to the left of a large blue square and a green cross at the top").

All text is lowercase without final punctuation (COCO references are scored after the PTB
tokenizer lowercases and strips punctuation anyway; the tiny tokenizer stays small).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass

from data_prep.shapes_scene import (
    REL_PHRASE,
    Obj,
    Scene,
    holds,
    position_phrase,
    true_relations,
)


@dataclass(frozen=True)
class CaptionStyle:
    """Mixing knobs of pretraining captions (probabilities per caption)."""

    p_size: float = 0.5  # mention small/large
    p_position: float = 0.2  # list with absolute positions
    p_relation: float = 0.15  # one relation between two objects
    p_next: float = 0.25  # use "next to" when the two objects are adjacent


def noun_phrase(o: Obj, with_size: bool) -> str:
    return f"a {o.size} {o.color} {o.shape}" if with_size else f"a {o.color} {o.shape}"


def join_list(parts: list[str]) -> str:
    """'x', 'x and y', 'x, y and z'."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def relation_word(rng: random.Random, a: Obj, b: Obj, p_next: float) -> str:
    if holds("next", a, b) and rng.random() < p_next:
        return "next"
    return rng.choice(true_relations(a, b))


def pretrain_caption(rng: random.Random, scene: Scene, style: CaptionStyle) -> str:
    objs, grid = scene.objects, scene.grid
    sized = rng.random() < style.p_size
    r = rng.random()
    if len(objs) >= 2 and r < style.p_relation:
        a, b = rng.sample(list(objs), 2)
        rel = relation_word(rng, a, b, style.p_next)
        return f"{noun_phrase(a, sized)} {REL_PHRASE[rel]} {noun_phrase(b, sized)}"
    if r < style.p_relation + style.p_position:
        return join_list([f"{noun_phrase(o, sized)} {position_phrase(o, grid)}" for o in objs])
    return join_list([noun_phrase(o, sized) for o in objs])


def downstream_caption(rng: random.Random, scene: Scene, p_drop_size: float = 0.25, p_next: float = 0.2) -> str:
    """One relational sentence: anchor pair + positions of the remaining objects."""
    objs, grid = list(scene.objects), scene.grid
    sized = rng.random() >= p_drop_size
    if len(objs) == 1:
        return f"{noun_phrase(objs[0], sized)} {position_phrase(objs[0], grid)}"
    a, b = rng.sample(objs, 2)
    rel = relation_word(rng, a, b, p_next)
    head = f"{noun_phrase(a, sized)} {REL_PHRASE[rel]} {noun_phrase(b, sized)}"
    rest = [f"{noun_phrase(o, sized)} {position_phrase(o, grid)}" for o in objs if o not in (a, b)]
    return head if not rest else join_list([head] + rest)


def words(text: str) -> list[str]:
    """Word tokens as the vocabulary-coverage check and the Karpathy file see them."""
    return re.findall(r"[a-z0-9]+", text.lower())


# ---------------------------------------------------------------- human answers (VQAv2)
SYNONYMS: dict[str, tuple[str, ...]] = {
    "circle": ("round", "oval", "ball"),
    "square": ("box", "rectangle", "block"),
    "triangle": ("pyramid", "triangle shape"),
    "cross": ("plus", "plus sign", "x"),
    "purple": ("violet", "magenta"),
    "white": ("light gray", "grey"),
    "yellow": ("gold",),
    "green": ("lime",),
    "blue": ("dark blue", "navy"),
    "red": ("dark red", "crimson"),
    "yes": ("yeah", "yep", "yes it is"),
    "no": ("nope", "not really"),
    "center": ("middle", "centre", "in middle"),
    "top left": ("upper left", "top left corner"),
    "top right": ("upper right",),
    "bottom left": ("lower left",),
    "bottom right": ("lower right",),
    "top": ("up", "upper"),
    "bottom": ("down", "lower"),
    "left": ("left side",),
    "right": ("right side",),
    "above": ("on top",),
    "below": ("under", "beneath"),
    "small": ("little", "tiny"),
    "large": ("big", "huge"),
}
NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@dataclass(frozen=True)
class AnswerNoise:
    """How ten simulated annotators deviate from the canonical answer (probabilities)."""

    cosmetic: float = 0.16  # "two" for "2", "a red circle", "Yes." (equal after VQA normalization)
    synonym: float = 0.08
    typo: float = 0.05
    wrong: float = 0.09  # another answer of the same question family


def _cosmetic(rng: random.Random, ans: str, answer_type: str) -> str:
    if answer_type == "number" and ans.isdigit() and int(ans) < len(NUMBER_WORDS):
        return NUMBER_WORDS[int(ans)]
    if answer_type == "other" and rng.random() < 0.5:
        return rng.choice(("a ", "the ")) + ans
    return rng.choice((ans.capitalize(), ans + ".", ans + " "))


def _typo(rng: random.Random, ans: str) -> str:
    if len(ans) < 4:
        return ans + ans[-1]
    i = rng.randrange(1, len(ans) - 1)
    return ans[:i] + ans[i + 1] + ans[i] + ans[i + 2 :] if rng.random() < 0.5 else ans[:i] + ans[i + 1 :]


def _norm(ans: str) -> str:
    """Light normalization (articles, case, punctuation, number words) to pick the majority."""
    toks = [t for t in re.findall(r"[a-z0-9]+", ans.lower()) if t not in ("a", "an", "the")]
    toks = [str(NUMBER_WORDS.index(t)) if t in NUMBER_WORDS else t for t in toks]
    return " ".join(toks)


def human_answers(
    rng: random.Random, ans: str, answer_type: str, space: tuple[str, ...], noise: AnswerNoise
) -> tuple[list[dict], str]:
    """Ten answers with real disagreement; the canonical answer stays the majority.

    Redrawn (rarely) when noise outvotes the canonical answer: `multiple_choice_answer` is the
    training target and must stay inside the pretraining vocabulary.
    """
    # questions differ in how much annotators disagree (some are unanimous, some are messy)
    k = rng.choice((0.1, 0.5, 1.0, 1.5))
    noise = AnswerNoise(noise.cosmetic * k, noise.synonym * k, noise.typo * k, noise.wrong * k)
    for _ in range(50):
        out = _ten_answers(rng, ans, answer_type, space, noise)
        if majority_answer([o["answer"] for o in out], ans) == ans:
            break
    return out, ans


def _ten_answers(
    rng: random.Random, ans: str, answer_type: str, space: tuple[str, ...], noise: AnswerNoise
) -> list[dict]:
    out: list[dict] = []
    for i in range(10):
        r, conf = rng.random(), "yes"
        if r < noise.wrong and len(space) > 1:
            a, conf = rng.choice([x for x in space if x != ans]), rng.choice(("maybe", "no", "yes"))
        elif r < noise.wrong + noise.typo:
            a = _typo(rng, ans)
        elif r < noise.wrong + noise.typo + noise.synonym and ans in SYNONYMS:
            a, conf = rng.choice(SYNONYMS[ans]), rng.choice(("yes", "maybe"))
        elif r < noise.wrong + noise.typo + noise.synonym + noise.cosmetic:
            a = _cosmetic(rng, ans, answer_type)
        else:
            a = ans
            conf = "yes" if rng.random() < 0.9 else "maybe"
        out.append({"answer": a, "answer_confidence": conf, "answer_id": i + 1})
    return out


def majority_answer(raw: list[str], canonical: str) -> str:
    """Most frequent answer after light normalization; ties favour the canonical one."""
    keys = Counter(_norm(a) for a in raw)
    best = max(keys.values())
    if keys.get(_norm(canonical), 0) == best:
        return canonical
    key = min(k for k, v in keys.items() if v == best)
    forms = Counter(a for a in raw if _norm(a) == key)
    return min(f for f, v in forms.items() if v == max(forms.values()))
