"""Bad-input corpus: every kind gives a clear error naming the file /
record, a counted skip, or (convertible images) just works; nothing crashes deep in a stack.

Policies under test are the documented ones: ``llava_structlora/data/dataset.py`` (structural
problems and undecodable images are counted skips, ``strict=True`` raises ``BadRecordError``),
``data_prep/common.py`` (unusable records are counted skips in the manifest; malformed files and
duplicated ids are ``ConvertError``), ``StructLoRAConfig`` (a bad value is a ``ValueError``
naming the field).
"""

from __future__ import annotations

import json
import math
import shutil

import pytest

from llava_structlora.data import BadRecordError, LazySupervisedDataset, num_image_tokens

from .conftest import record, write_json

CONVERTIBLE = ("good", "grayscale", "rgba", "cmyk", "palette")
UNREADABLE = ("corrupt_jpeg", "truncated_png", "empty_file", "not_an_image", "missing")


def _dataset(tmp_path, corpus, processor, recs, **kw) -> LazySupervisedDataset:
    path = write_json(tmp_path / "llava_train.json", recs)
    return LazySupervisedDataset(path, processor, image_folder=corpus["good"].parent, **kw)


def _n_image_tokens(item, processor) -> int:
    return int((item["input_ids"] == processor.tokenizer.convert_tokens_to_ids(processor.image_token)).sum())


# ----------------------------------------------------------------------------- images
@pytest.mark.parametrize("kind", CONVERTIBLE)
def test_convertible_images_become_rgb(kind, tmp_path, corpus, processor):
    ds = _dataset(tmp_path, corpus, processor, [record(kind, corpus[kind].name)])
    item = ds[0]
    assert item["id"] == kind and item["pixel_values"].shape == (3, 48, 48)
    assert not ds.skipped


@pytest.mark.parametrize("kind", UNREADABLE)
def test_unreadable_image_is_counted_skip(kind, tmp_path, corpus, processor, caplog):
    recs = [record(kind, corpus[kind].name), record("next", corpus["good"].name)]
    ds = _dataset(tmp_path, corpus, processor, recs)
    assert ds[0]["id"] == "next"  # the bad sample is replaced by the next usable one
    assert ds.skipped == {"bad image": 1}
    assert corpus[kind].name in caplog.text and kind in caplog.text  # logged with id and path


@pytest.mark.parametrize("kind", UNREADABLE)
def test_unreadable_image_strict_names_file_and_record(kind, tmp_path, corpus, processor):
    ds = _dataset(tmp_path, corpus, processor, [record(kind, corpus[kind].name)], strict=True)
    with pytest.raises(BadRecordError, match=rf"record {kind}: image .*{corpus[kind].name}"):
        ds[0]


def test_only_bad_images_stop_with_clear_error(tmp_path, corpus, processor):
    recs = [record(f"bad{i}", corpus["missing"].name) for i in range(4)]
    ds = _dataset(tmp_path, corpus, processor, recs, max_consecutive_bad=3)
    with pytest.raises(BadRecordError, match="bad images in a row"):
        ds[0]


# ----------------------------------------------------------------------------- JSON files
@pytest.mark.parametrize(
    "content,what",
    [
        (b'[{"id": "a", "conversations": [', "malformed JSON"),
        (b"", "empty file"),
        (b'{"data": [{"id": "a"}]}', "object instead of a list"),
        (b'["just", "strings"]', "list of non-records"),
        (
            b'[{"id": "a", "image": "good.png", "conversations": [{"from": "human", "value": "\xff\xfe caf\xe9"}]}]',
            "non-UTF8 bytes",
        ),
    ],
    ids=["malformed", "empty_file", "object_not_list", "list_of_strings", "non_utf8"],
)
def test_bad_json_file_is_clear_error(content, what, tmp_path, corpus, processor):
    path = tmp_path / "llava_train.json"
    path.write_bytes(content)
    with pytest.raises(BadRecordError, match=str(path).replace(".", r"\.")):
        LazySupervisedDataset(path, processor, image_folder=corpus["good"].parent)


def test_records_without_assistant_turn_are_counted(tmp_path, corpus, processor):
    recs = [
        record("ok", corpus["good"].name),
        {
            "id": "no_gpt",
            "image": corpus["good"].name,
            "conversations": [{"from": "human", "value": "<image>\nwhat is it?"}],
        },
        {"id": "no_conv", "image": corpus["good"].name},
        {"id": "bad_roles", "conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]},
    ]
    ds = _dataset(tmp_path, corpus, processor, recs)
    assert len(ds) == 1 and sum(ds.skipped.values()) == 3  # none lost: 1 kept + 3 counted
    with pytest.raises(BadRecordError, match="record no_gpt"):
        _dataset(tmp_path, corpus, processor, recs, strict=True)


def test_image_record_without_image_token_stays_consistent(tmp_path, corpus, processor):
    """An image but no ``<image>`` in the text: either refused clearly or the image tokens are
    inserted; never a sample whose image-token count mismatches its pixel_values (which only
    fails later, deep inside the model's forward)."""
    recs = [record("no_token", corpus["good"].name, question="what shape is it?"), record("next", corpus["good"].name)]
    try:
        ds = _dataset(tmp_path, corpus, processor, recs)
        item = ds[0]
    except (BadRecordError, ValueError) as e:
        assert "no_token" in str(e)
        return
    if item["id"] == "no_token":
        n = _n_image_tokens(item, processor)
        assert n == num_image_tokens(processor), (
            f"record with an image but no <image> token gave {n} image tokens with pixel_values set "
            f"(the model's forward would fail); expected {num_image_tokens(processor)} or a counted skip"
        )
    else:
        assert sum(ds.skipped.values()) == 1


def test_multiple_image_tokens_are_a_counted_skip(tmp_path, corpus, processor, caplog):
    """Exactly one <image> in the first human turn; several are a named, counted skip."""
    recs = [
        record("multi", corpus["good"].name, question="<image>\nwhat <image> shape is <image> it?"),
        record("next", corpus["good"].name),
    ]
    ds = _dataset(tmp_path, corpus, processor, recs)
    assert len(ds) == 1 and ds.skipped == {"bad image token": 1} and "record multi (index 0)" in caplog.text
    assert _n_image_tokens(ds[0], processor) == num_image_tokens(processor)


def test_over_length_conversation_is_truncated_and_counted(tmp_path, corpus, processor, caplog):
    long_answer = " ".join(["a red circle"] * 60)
    recs = [record("long", corpus["good"].name, answer=long_answer)]
    full = _dataset(tmp_path, corpus, processor, recs, model_max_length=4096)[0]
    first_target = int((full["labels"] != -100).nonzero()[0])  # prompt length: keep a few answer tokens
    cap = first_target + 5
    ds = _dataset(tmp_path, corpus, processor, recs, model_max_length=cap)
    item = ds[0]
    assert len(item["input_ids"]) == cap and ds.truncated == 1 and "long" in caplog.text
    assert _n_image_tokens(item, processor) == num_image_tokens(processor)  # image tokens never cut


def test_max_length_below_image_tokens_is_clear_error(tmp_path, corpus, processor):
    ds = _dataset(tmp_path, corpus, processor, [record("tiny", corpus["good"].name)], model_max_length=5)
    with pytest.raises(ValueError, match="model_max_length=5"):
        ds[0]


# ----------------------------------------------------------------------------- converters (GQA format)
def _gqa(tmp_path, corpus, questions: dict | bytes, check="full", name="val_balanced_questions.json"):
    from data_prep.gqa import convert_gqa

    images = tmp_path / "gqa_images"
    images.mkdir(exist_ok=True)
    for kind in ("good", "corrupt_jpeg", "truncated_png", "empty_file", "cmyk"):
        shutil.copy(corpus[kind], images / f"{kind}.jpg")
    path = tmp_path / name
    path.write_bytes(questions if isinstance(questions, bytes) else json.dumps(questions).encode())
    return convert_gqa([path], images=str(images), out=str(tmp_path / "out"), check_images=check)


def _gqa_q(image_id: str, answer: str = "red") -> dict:
    return {
        "imageId": image_id,
        "question": "what colour is it?",
        "answer": answer,
        "fullAnswer": "It is red.",
        "types": {"structural": "query", "semantic": "attr", "detailed": "color"},
    }


def test_converter_counts_each_unusable_image(tmp_path, corpus):
    qs = {
        "1": _gqa_q("good"),
        "2": _gqa_q("corrupt_jpeg"),
        "3": _gqa_q("truncated_png"),
        "4": _gqa_q("empty_file"),
        "5": _gqa_q("missing"),
        "6": _gqa_q("cmyk"),
        "7": _gqa_q("good", answer=""),
    }
    man = _gqa(tmp_path, corpus, qs)
    reasons = man["reasons"]["val"]
    assert man["counts"]["val"] == 2  # good + cmyk (convertible)
    assert reasons == {"corrupt_image": 3, "missing_image": 1, "empty_answer": 1}
    assert man["counts"]["val"] + man["skipped"]["val"] == len(qs)  # no lost record


@pytest.mark.parametrize(
    "content,pattern",
    [
        (b'{"1": {"imageId": "good", "question": ', r"malformed JSON in .*val_balanced_questions\.json"),
        (b"", r"val_balanced_questions\.json"),
        (b'[{"imageId": "good"}]', r"val_balanced_questions\.json: top-level JSON value must be an object"),
        (
            b'{"1": {"imageId": "good", "question": "q?", "answer": "a"}, "1": {"imageId": "good", "question": "q?", '
            b'"answer": "b"}}',
            r"duplicated question id '1'",
        ),
        (b'{"1": {"imageId": "good", "question": "caf\xe9?", "answer": "a"}}', r"val_balanced_questions\.json"),
    ],
    ids=["malformed", "empty_file", "list_not_object", "duplicate_id", "non_utf8"],
)
def test_converter_bad_file_is_clear_error(content, pattern, tmp_path, corpus):
    from data_prep.common import ConvertError

    with pytest.raises(ConvertError, match=pattern):
        _gqa(tmp_path, corpus, content, check="exists")


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "field",
    [
        "alpha",
        "dropout",
        "lambda_ib",
        "lambda_penalty",
        "smooth_eta",
        "gate_init",
        "gate_lr_mult",
        "ib_warmup_steps",
        "hard_concrete_temperature",
    ],
)
def test_nan_in_structlora_config_names_the_field(field):
    from llava_structlora.structlora.config import StructLoRAConfig

    with pytest.raises(ValueError, match=field):
        StructLoRAConfig(**{field: math.nan})


@pytest.mark.parametrize(
    "field,cls",
    [("learning_rate", "TrainingArguments"), ("lambda_ib", "StructLoRAArguments"), ("lora_alpha", "ModelArguments")],
)
def test_nan_in_training_yaml_is_refused_before_launch(field, cls, tmp_path):
    from llava_structlora.train.cli import parse_args
    from llava_structlora.train.config import ConfigError

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"task: coco\nmax_steps: 3\n{field}: .nan\n")
    with pytest.raises(ConfigError, match=rf"{cls}\.{field}=nan"):
        parse_args(
            [
                "--config",
                str(recipe),
                "--model_name_or_path",
                str(tmp_path),
                "--data_path",
                str(tmp_path / "llava_train.json"),
                "--output_dir",
                str(tmp_path / "out"),
            ],
            with_deepspeed=False,
        )


@pytest.mark.parametrize(
    "results,pattern",
    [
        (
            [
                {"questionId": "1", "prediction": "red"},
                {"questionId": "1", "prediction": "blue"},
                {"questionId": "2", "prediction": "red"},
            ],
            "appear more than once (e.g. '1')",
        ),
        ([{"questionId": "1", "prediction": "red"}], "have no result (e.g. '2')"),
        (
            [
                {"questionId": "1", "prediction": "red"},
                {"questionId": "2", "prediction": "red"},
                {"questionId": "9", "prediction": "red"},
            ],
            "not in the references (e.g. '9')",
        ),
        ({"questionId": "1"}, "results"),
    ],
    ids=["duplicate_id", "missing_id", "unknown_id", "wrong_shape"],
)
def test_scorer_refuses_bad_result_ids(results, pattern, tmp_path, capsys):
    """Duplicate / missing / unknown ids in a results file: exit 2 with a clear message, no score."""
    from llava_structlora.metrics.__main__ import main

    q = write_json(tmp_path / "testdev_balanced_questions.json", {"1": _gqa_q("good"), "2": _gqa_q("good")})
    r = write_json(tmp_path / "results.json", results)
    assert main(["gqa", "--questions", str(q), "--results", str(r)]) == 2
    captured = capsys.readouterr()
    assert pattern in captured.err and str(r) in captured.err and captured.out == ""


# ----------------------------------------------------------------------------- evaluation inputs
@pytest.mark.parametrize(
    "content,pattern",
    [
        (b'{"question_id": 1, "text": "q?"}\n{"question_id": 1, "text": "again?"}\n', r":2: duplicate question_id 1"),
        (b'{"question_id": 1, "text": "q?"}\n{"question_id": 2, "text": \n', r":2: not valid JSON"),
        (b'{"question_id": 1, "text": "caf\xe9?"}\n', r"questions\.jsonl"),
        (b"", r"no questions"),
    ],
    ids=["duplicate_id", "malformed_line", "non_utf8", "empty_file"],
)
def test_eval_question_file_errors_name_file_and_line(content, pattern, tmp_path):
    from llava_structlora.evaluation.generate import load_questions

    path = tmp_path / "val_questions.jsonl"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=pattern) as err:
        load_questions(path, tmp_path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("kind", UNREADABLE)
def test_eval_unreadable_image_error_names_the_file(kind, corpus, processor):
    """At evaluation time a bad image cannot be skipped (the scorer needs every id): it must
    stop with an error that names the image file."""
    from llava_structlora.evaluation.generate import Question, batch_pixels

    good = Question(1, "what shape is it?", corpus["good"])
    bad = Question(2, "what shape is it?", corpus[kind])
    with pytest.raises(Exception) as err:
        batch_pixels([good, bad], processor)
    assert corpus[kind].name in str(err.value), f"{type(err.value).__name__}: {err.value}"
