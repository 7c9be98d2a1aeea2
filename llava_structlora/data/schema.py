"""Schema of one LLaVA instruction record, checked once when the dataset is built.

Why: a record that is structurally wrong must never reach training. ``null`` or list answers would
become the trained text ("None", "['a', 'circle']"); an ``<image>`` inside an answer doubles the
image placeholders and crashes the forward pass far from the record; a non-string ``image`` or a
non-object turn ends in a TypeError mid-run. ``check_record`` returns the reason a record is
unusable (the dataset counts and logs it, naming the record) or None.

Rules: the record is an object; ``id`` (optional) a string or integer; ``image`` (optional) a
non-empty string (a path, relative to the image folder or absolute: the training JSON is the
user's own; converters keep the paths they write inside ``--images``); ``conversations`` a list of objects with
``from`` in {human, gpt} and a string ``value``; every answer (gpt value) a non-empty string; an
image record has exactly one ``<image>`` and it is in the first human turn, a text-only record
has none; roles alternate (``conversation.conversation_segments``).
"""

from __future__ import annotations

from typing import Any, Optional

from .conversation import IMAGE_TOKEN, ROLES, ConversationError, conversation_segments


def _check_turns(turns: list) -> Optional[str]:
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            return f"turn {i} is {type(turn).__name__}, not an object"
        role, value = turn.get("from"), turn.get("value")
        if role not in ROLES:
            return f"turn {i}: role {role!r} is not one of {sorted(ROLES)}"
        if not isinstance(value, str):
            return f"turn {i} ({role}): value is {type(value).__name__}, not a string"
        if role == "gpt" and not value.strip():
            return f"turn {i}: empty answer"
    return None


def _check_image_tokens(turns: list, with_image: bool) -> Optional[str]:
    first_human = next((i for i, t in enumerate(turns) if t["from"] == "human"), None)
    for i, turn in enumerate(turns):
        n = turn["value"].count(IMAGE_TOKEN)
        if not with_image and n:
            return f"turn {i}: {IMAGE_TOKEN} in a record without an image"
        if with_image and i != first_human and n:
            return f"turn {i} ({turn['from']}): {IMAGE_TOKEN} outside the first human turn"
        if with_image and i == first_human and n != 1:
            return f"turn {i}: {n} {IMAGE_TOKEN} tokens in the first human turn (expected exactly one)"
    return None


def check_record(rec: Any) -> Optional[tuple[str, str]]:
    """(category, detail) of the first problem of `rec`, or None when it is usable."""
    if not isinstance(rec, dict):
        return "not an object", f"record is {type(rec).__name__}"
    rid = rec.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
        return "bad id", f"id is {type(rid).__name__}, not a string or integer"
    image = rec.get("image")
    if image is not None:
        if not isinstance(image, str) or not image.strip():
            return "bad image field", f"image is {image!r}, not a non-empty string path"
    turns = rec.get("conversations")
    if not isinstance(turns, list) or not turns:
        return "no conversations", "no conversations list"
    problem = _check_turns(turns)
    if problem is None:
        problem = _check_image_tokens(turns, image is not None)
        if problem is not None:
            return "bad image token", problem
    if problem is not None:
        return "bad turn", problem
    try:
        conversation_segments(turns, with_image=image is not None)
    except ConversationError as e:
        return ("no gpt turn" if str(e) == "no gpt turn" else "roles not alternating"), str(e)
    return None
