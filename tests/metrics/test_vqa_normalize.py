"""Hand-computed cases for every normalization rule of the official VQA code (vqaEval.py)."""

import pytest

from llava_structlora.metrics.vqa_normalize import (
    evalai_answer_processor,
    normalize,
    process_digit_article,
    process_punctuation,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1,000", "1000"),  # digit-comma-digit anywhere -> every mark deleted, not spaced
        ("3.5", "3.5"),  # period followed by a digit is kept
        ("5.", "5"),  # trailing period dropped
        ("the dog.", "the dog"),
        ("a,b", "a b"),  # no adjacent space, no digit comma -> replaced by a space
        ("a, b", "a b"),  # ", " present -> the comma is deleted
        ("1,000 and a,b", "1000 and ab"),  # the digit comma switches ALL marks to deletion
        ("yes!", "yes "),
        ("(1) 2", " 1 2"),  # ") " deletes ")"; "(" has no adjacent space -> space
        ("it's", "it's"),  # apostrophes and colons are not in the official list
        ("10:30", "10:30"),
        ("." * 33, "."),  # re.UNICODE passed as count: at most 32 periods removed
    ],
)
def test_process_punctuation(text, expected):
    assert process_punctuation(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("two", "2"),
        ("None", "0"),
        ("zero", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),  # number words only up to ten
        ("Two Dogs", "2 dogs"),  # lowercased first
        ("the red ball", "red ball"),
        ("a", ""),
        ("an apple", "apple"),
        ("dont", "don't"),
        ("Dont", "don't"),
        ("isnt it", "isn't it"),
        ("Im", "im"),  # capitalized keys never fire after lowercasing
        ("  many   spaces ", "many spaces"),
    ],
)
def test_process_digit_article(text, expected):
    assert process_digit_article(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The two dogs.", "2 dogs"),
        ("1,000", "1000"),
        ("3.5", "3.5"),
        ("a couldnt", "couldn't"),
    ],
)
def test_normalize_composes_both(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Yes", "yes"),
        ("1,000", "1000"),  # commas removed up front
        ("What's that?", "what 's that"),  # "'s" split off, "?" removed
        ("The Two.", "2"),
        ("red\tball\n", "red ball"),
    ],
)
def test_evalai_answer_processor(text, expected):
    assert evalai_answer_processor(text) == expected
