"""vicuna_v1 conversation template, as LLaVA-1.5 trains and prompts.

A conversation renders as::

    {system }USER: <image>\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>

(LLaVA's ``conv_vicuna_v1``: roles USER/ASSISTANT, sep " ", sep2 "</s>"). The system prompt
is optional: the toy base is trained WITHOUT it (``system=""``, the default here) because 30
extra tokens per sample double the CPU cost of a 40-token sequence; pass
``system=VICUNA_SYSTEM`` for a real LLaVA-1.5 checkpoint. Whatever is used in training must
be used for generation, so both go through this module.

Rendering is returned as segments ``(text, is_target)``: the dataset tokenizes each segment
on its own and labels only the targets (the assistant answers with their ``</s>``). Segments
split at spaces, so with the toy tokenizer the concatenated ids equal the ids of the whole
string (tested).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

IMAGE_TOKEN = "<image>"
IGNORE_INDEX = -100
VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
ROLES = {"human": "USER", "gpt": "ASSISTANT"}


class ConversationError(ValueError):
    """A record whose conversation cannot be rendered (no gpt turn, wrong role order...)."""


@dataclass(frozen=True)
class Segment:
    text: str
    is_target: bool


def normalize_image_prompt(question: str, with_image: bool = True) -> str:
    """Exactly one ``<image>`` first, followed by a newline, as LLaVA's preprocess_multimodal does.

    A record with an image but no (or several) ``<image>`` tokens would otherwise reach the model
    with a token/feature count mismatch; a text-only record keeps no image token at all.
    """
    rest = question.replace(IMAGE_TOKEN, "").strip()
    return f"{IMAGE_TOKEN}\n{rest}" if with_image else rest


def conversation_segments(turns: Sequence[dict], system: str = "", eos: str = "</s>",
                          with_image: bool = True) -> list[Segment]:
    """Render LLaVA ``conversations`` into prompt / target segments.

    Turns must alternate human, gpt, human, gpt...; a leading gpt turn is dropped (LLaVA does the
    same) and a trailing human turn without answer is ignored. Raises ConversationError when no
    gpt answer remains or the roles are not alternating.
    """
    turns = list(turns)
    if turns and turns[0].get("from") == "gpt":
        turns = turns[1:]
    pairs = []
    for i in range(0, len(turns) - 1, 2):
        h, g = turns[i], turns[i + 1]
        if h.get("from") != "human" or g.get("from") != "gpt":
            raise ConversationError(f"turn {i}: expected human then gpt, got {h.get('from')!r}, {g.get('from')!r}")
        pairs.append((str(h.get("value", "")), str(g.get("value", "")).strip()))
    if not pairs:
        raise ConversationError("no gpt turn")
    segments: list[Segment] = []
    prefix = f"{system} " if system else ""
    for k, (q, a) in enumerate(pairs):
        q = normalize_image_prompt(q, with_image) if k == 0 else q.replace(IMAGE_TOKEN, "").strip()
        segments.append(Segment(f"{prefix if k == 0 else ''}USER: {q} ASSISTANT:", False))
        segments.append(Segment(f" {a}{eos}", True))
    return segments


def build_prompt(question: str, system: str = "", with_image: bool = True) -> str:
    """Generation prompt for one question: ``USER: <image>\\n{q} ASSISTANT:``.

    Feed it with the (expand2square'd) image to the LlavaProcessor, or to ``encode_prompt``.
    """
    turns = [{"from": "human", "value": question}, {"from": "gpt", "value": ""}]
    return conversation_segments(turns, system, with_image=with_image)[0].text
