"""LLaVA-1.5 conversation formats (``conv_vicuna_v1``), as LLaVA-1.5 trains and prompts.

A conversation renders as::

    {system }USER: <image>\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>

(LLaVA's ``conv_vicuna_v1``: roles USER/ASSISTANT, sep " ", sep2 "</s>"). Two named formats
(``CONV_TEMPLATES``, chosen with ``--conv_template``):

- ``vicuna_v1``: with LLaVA's conv_vicuna_v1 system prompt (``VICUNA_SYSTEM``), the format
  LLaVA-1.5 was trained (``--version v1``) and evaluated (``--conv-mode vicuna_v1``) with;
- ``vicuna_v1_nosys``: the same without system prompt, what the toy base is trained with (30
  extra tokens per sample would double the CPU cost of a 40-token sequence). Not LLaVA's
  ``plain`` (its pretraining format without roles), hence the name.

Whatever is used in training must be used for generation, so both go through this module, and
the Jinja chat templates written into processors are generated from it (``chat_template.py``).

Rendering is returned as segments ``(text, is_target)``: the dataset tokenizes each segment
on its own and labels only the targets (the assistant answers with their ``</s>``). Segments
split at spaces, so with the toy tokenizer the concatenated ids equal the ids of the whole
string (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

IMAGE_TOKEN = "<image>"
IGNORE_INDEX = -100
# LLaVA's conv_vicuna_v1 (llava/conversation.py), the one `--version v1` / `--conv-mode vicuna_v1` select.
# (conv_llava_v1 says "human" where this says "user"; LLaVA-1.5's scripts use conv_vicuna_v1.)
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
ROLES = {"human": "USER", "gpt": "ASSISTANT"}
SEP, SEP2 = " ", "</s>"  # after a user turn, after an assistant turn (SeparatorStyle.TWO)
CONV_TEMPLATES: dict[str, str] = {"vicuna_v1_nosys": "", "vicuna_v1": VICUNA_SYSTEM}  # name -> system prompt
DEFAULT_CONV_TEMPLATE = "vicuna_v1_nosys"  # what the toy base is trained with


class ConversationError(ValueError):
    """A record whose conversation cannot be rendered (no gpt turn, wrong role order...)."""


def conv_system(conv_template: str) -> str:
    """System prompt of a named conversation format; unknown names are an error listing the known ones."""
    if conv_template not in CONV_TEMPLATES:
        hint = (
            (
                " (LLaVA's 'plain' is its pretraining format without roles, not trained here; the role "
                "format without system prompt is 'vicuna_v1_nosys')"
            )
            if conv_template == "plain"
            else ""
        )
        raise ValueError(f"conv_template={conv_template!r}: expected one of {sorted(CONV_TEMPLATES)}{hint}")
    return CONV_TEMPLATES[conv_template]


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


def conversation_segments(
    turns: Sequence[dict], system: str = "", eos: str = SEP2, with_image: bool = True
) -> list[Segment]:
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
    prefix = f"{system}{SEP}" if system else ""
    for k, (q, a) in enumerate(pairs):
        q = normalize_image_prompt(q, with_image) if k == 0 else q.replace(IMAGE_TOKEN, "").strip()
        segments.append(Segment(f"{prefix if k == 0 else ''}{ROLES['human']}: {q}{SEP}{ROLES['gpt']}:", False))
        segments.append(Segment(f" {a}{eos}", True))
    return segments


def build_prompt(question: str, system: str = "", with_image: bool = True) -> str:
    """Generation prompt for one question: ``USER: <image>\\n{q} ASSISTANT:``.

    Feed it with the (expand2square'd) image to the LlavaProcessor, or to ``encode_prompt``.
    """
    turns = [{"from": "human", "value": question}, {"from": "gpt", "value": ""}]
    return conversation_segments(turns, system, with_image=with_image)[0].text
