"""The generated chat templates reproduce our own prompt encoding token for token, per format."""

from __future__ import annotations

import pytest
from PIL import Image

from llava_structlora.data import (
    CONV_TEMPLATES,
    DEFAULT_CONV_TEMPLATE,
    VICUNA_SYSTEM,
    attach_chat_templates,
    conv_system,
    encode_conversation,
    encode_prompt,
)
from llava_structlora.data.chat_template import jinja_chat_template

IMG = Image.new("RGB", (64, 48), (200, 30, 30))
TURNS = [("what color is the circle?", "red"), ("what shape is it?", "a circle"), ("and the size?", "small")]


def hf_messages(pairs, with_answer_last: bool, system: str | None = None) -> list[dict]:
    """HF-format messages: image block in the first user turn, text blocks elsewhere."""
    msgs = [{"role": "system", "content": system}] if system is not None else []
    for k, (q, a) in enumerate(pairs):
        content = ([{"type": "image", "image": IMG}] if k == 0 else []) + [{"type": "text", "text": q}]
        msgs.append({"role": "user", "content": content})
        if k < len(pairs) - 1 or with_answer_last:
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": a}]})
    return msgs


def llava_turns(pairs) -> list[dict]:
    out = []
    for k, (q, a) in enumerate(pairs):
        out += [{"from": "human", "value": ("<image>\n" if k == 0 else "") + q}, {"from": "gpt", "value": a}]
    return out


@pytest.fixture(scope="module")
def templated(processor, tmp_path_factory):
    """The processor with our templates, saved and reloaded by stock AutoProcessor."""
    from transformers import AutoProcessor

    out = tmp_path_factory.mktemp("proc")
    attach_chat_templates(processor, DEFAULT_CONV_TEMPLATE).save_pretrained(out)
    assert (out / "chat_template.jinja").is_file()
    assert {p.stem for p in (out / "additional_chat_templates").glob("*.jinja")} == set(CONV_TEMPLATES)
    return AutoProcessor.from_pretrained(out)


def _ids(templated, msgs, name, gen: bool) -> list[int]:
    ids = templated.apply_chat_template(
        msgs, chat_template=name, add_generation_prompt=gen, tokenize=True, return_tensors=None
    )
    return list(ids[0] if ids and isinstance(ids[0], list) else ids)


@pytest.mark.parametrize("name", sorted(CONV_TEMPLATES))
@pytest.mark.parametrize("n_turns", [1, 3])
def test_generation_prompt_ids_equal_encode(templated, name, n_turns):
    """apply_chat_template(add_generation_prompt=True, tokenize=True) == our generation prompt ids."""
    pairs = TURNS[:n_turns]
    system = conv_system(name)
    got = _ids(templated, hf_messages(pairs, with_answer_last=False), name, gen=True)
    if n_turns == 1:
        want = encode_prompt(pairs[0][0], templated, system=system)
    else:  # the earlier turns as training encodes them, then the last question's prompt
        history, _ = encode_conversation(llava_turns(pairs[:-1]), templated, system=system)
        last = encode_prompt(pairs[-1][0], templated, with_image=False)
        want = history + last[1:]  # no second BOS
    assert got == want
    assert got.count(templated.tokenizer.convert_tokens_to_ids("<image>")) > 1  # expanded like training


@pytest.mark.parametrize("name", sorted(CONV_TEMPLATES))
def test_full_conversation_ids_and_assistant_mask_equal_training(templated, name):
    """Whole conversation: ids equal encode_conversation, assistant mask equals the training labels."""
    ids, labels = encode_conversation(llava_turns(TURNS), templated, system=conv_system(name))
    out = templated.apply_chat_template(
        hf_messages(TURNS, with_answer_last=True),
        chat_template=name,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        return_tensors=None,
    )
    assert list(out["input_ids"][0]) == ids
    assert [bool(m) for m in out["assistant_masks"][0]] == [lab != -100 for lab in labels]


def test_default_is_the_trained_format_and_system_message_overrides(templated):
    msgs = hf_messages(TURNS[:1], with_answer_last=False)
    assert _ids(templated, msgs, None, gen=True) == _ids(templated, msgs, DEFAULT_CONV_TEMPLATE, gen=True)
    text = templated.apply_chat_template(msgs, chat_template="vicuna_v1", add_generation_prompt=True)
    assert text == f"{VICUNA_SYSTEM} USER: <image>\n{TURNS[0][0]} ASSISTANT:"
    custom = templated.apply_chat_template(
        hf_messages(TURNS[:1], False, system="Be brief."), chat_template="vicuna_v1", add_generation_prompt=True
    )
    assert custom == f"Be brief. USER: <image>\n{TURNS[0][0]} ASSISTANT:"
    plain = templated.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert plain == "USER: hi ASSISTANT:"  # string content, no image, no system prompt


def test_tokenizer_carries_the_default_template(templated):
    text = templated.tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "USER: hi ASSISTANT:"


@pytest.mark.parametrize(
    "msgs, match",
    [
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "alternate"),
        (
            [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "c"}]},
            ],
            "one image",
        ),
    ],
)
def test_bad_conversations_raise(templated, msgs, match):
    with pytest.raises(Exception, match=match):
        templated.apply_chat_template(msgs, chat_template="vicuna_v1")


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ValueError, match="vicuna_v1_nosys"):
        jinja_chat_template("plain")
