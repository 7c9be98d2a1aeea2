"""Training-record schema: every bad record is a counted skip that names it, found when
the dataset is built (not mid-run); bad JSON encodings and nesting are clear errors naming the file.

Cases are invented per class: wrong types of each field, wrong roles, ``<image>`` anywhere but
once in the first human turn, empty / non-string answers, decompression bombs, answers cut away
by truncation, and files that are UTF-16, BOM-prefixed or absurdly nested.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from llava_structlora.data import BadRecordError, LazySupervisedDataset

from .conftest import record, write_json

H, G = "human", "gpt"


def _turns(*pairs):
    return [{"from": r, "value": v} for r, v in pairs]


BAD_RECORDS = {  # id -> (record without id/image, has image, expected category)
    "null_answer": (_turns((H, "<image>\nq?"), (G, None)), True, "bad turn"),
    "list_answer": (_turns((H, "<image>\nq?"), (G, ["a", "circle"])), True, "bad turn"),
    "number_answer": (_turns((H, "<image>\nq?"), (G, 3)), True, "bad turn"),
    "empty_answer": (_turns((H, "<image>\nq?"), (G, "   ")), True, "bad turn"),
    "dict_question": (_turns((H, {"text": "q"}), (G, "a")), False, "bad turn"),
    "turn_is_string": (["<image>\nq?", {"from": G, "value": "a"}], True, "bad turn"),
    "turn_is_null": ([None, {"from": G, "value": "a"}], True, "bad turn"),
    "unknown_role": (_turns(("user", "<image>\nq?"), ("assistant", "a")), True, "bad turn"),
    "role_missing": ([{"value": "<image>\nq?"}, {"from": G, "value": "a"}], True, "bad turn"),
    "image_in_answer": (_turns((H, "<image>\nq?"), (G, "a <image> circle")), True, "bad image token"),
    "image_in_second_question": (
        _turns((H, "<image>\nq?"), (G, "a"), (H, "<image> and?"), (G, "b")),
        True,
        "bad image token",
    ),
    "no_image_token": (_turns((H, "q?"), (G, "a")), True, "bad image token"),
    "two_image_tokens": (_turns((H, "<image><image>\nq?"), (G, "a")), True, "bad image token"),
    "token_without_image": (_turns((H, "<image>\nq?"), (G, "a")), False, "bad image token"),
    "conversations_dict": ({"from": H, "value": "q"}, True, "no conversations"),
    "conversations_empty": ([], True, "no conversations"),
    "only_human": (_turns((H, "<image>\nq?")), True, "no gpt turn"),
    "two_humans": (_turns((H, "<image>\nq?"), (H, "again?")), True, "roles not alternating"),
}


def _rec(rid, turns, with_image, image="good.png"):
    rec = {"id": rid, "conversations": turns}
    if with_image:
        rec["image"] = image
    return rec


def _build(tmp_path, corpus, processor, recs, **kw):
    path = write_json(tmp_path / "llava_train.json", recs)
    return LazySupervisedDataset(path, processor, image_folder=corpus["good"].parent, **kw)


@pytest.mark.parametrize("rid", sorted(BAD_RECORDS))
def test_bad_record_is_a_named_counted_skip_at_build_time(rid, tmp_path, corpus, processor, caplog):
    turns, with_image, category = BAD_RECORDS[rid]
    recs = [record("ok", corpus["good"].name), _rec(rid, turns, with_image)]
    ds = _build(tmp_path, corpus, processor, recs)
    assert len(ds) == 1 and ds.skipped == {category: 1}  # found while indexing, before any __getitem__
    assert f"record {rid} (index 1)" in caplog.text
    with pytest.raises(BadRecordError, match=rf"record {rid} \(index 1\)"):
        _build(tmp_path, corpus, processor, recs, strict=True)


@pytest.mark.parametrize(
    "field,value,category",
    [
        ("image", 7, "bad image field"),
        ("image", ["a.png"], "bad image field"),
        ("image", "", "bad image field"),
        ("image", {"path": "a.png"}, "bad image field"),
        ("id", ["x"], "bad id"),
        ("id", True, "bad id"),
        ("id", {"k": 1}, "bad id"),
    ],
)
def test_mistyped_top_level_field_is_a_counted_skip(field, value, category, tmp_path, corpus, processor, caplog):
    bad = record("bad", corpus["good"].name)
    bad[field] = value
    ds = _build(tmp_path, corpus, processor, [record("ok", corpus["good"].name), bad])
    assert len(ds) == 1 and ds.skipped == {category: 1} and "(index 1)" in caplog.text


def test_non_object_records_are_counted(tmp_path, corpus, processor):
    ds = _build(tmp_path, corpus, processor, [record("ok", corpus["good"].name), "text", 3, None, ["x"]])
    assert len(ds) == 1 and ds.skipped == {"not an object": 4}


def test_all_records_bad_is_an_error_with_the_counts(tmp_path, corpus, processor):
    recs = [_rec(k, *BAD_RECORDS[k][:2]) for k in ("null_answer", "image_in_answer", "only_human")]
    with pytest.raises(BadRecordError, match=r"no usable records .*'bad turn': 1"):
        _build(tmp_path, corpus, processor, recs)


def test_good_multi_turn_and_text_only_records_pass(tmp_path, corpus, processor):
    recs = [
        _rec("multi", _turns((H, "what is it?\n<image>"), (G, "a circle"), (H, "colour?"), (G, "red")), True),
        _rec("text", _turns((H, "say hi"), (G, "hi")), False),
        _rec("lead_gpt", _turns((G, "hello"), (H, "<image>\nq?"), (G, "a")), True),
    ]
    ds = _build(tmp_path, corpus, processor, recs)
    assert len(ds) == 3 and not ds.skipped
    assert ds[1]["pixel_values"] is None and ds[0]["pixel_values"] is not None


# ----------------------------------------------------------------------------- access-time skips
@pytest.mark.parametrize("scale", [1.5, 3])
def test_decompression_bomb_image_is_a_counted_skip(scale, tmp_path, corpus, processor, monkeypatch, caplog):
    """A small file that claims more pixels than PIL's guard (warning zone 1x-2x and error zone > 2x)."""
    bomb = corpus["good"].parent / f"bomb{scale}.png"
    Image.new("L", (400, 400)).save(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(400 * 400 / scale))
    ds = _build(tmp_path, corpus, processor, [record("bomb", bomb.name), record("next", corpus["good"].name)])
    assert ds[0]["id"] == "next" and ds.skipped == {"bad image": 1}
    assert "bomb" in caplog.text and bomb.name in caplog.text


def test_answer_cut_away_by_truncation_is_a_counted_skip(tmp_path, corpus, processor, caplog):
    """Zero target tokens would make the loss 0/0 (NaN) at batch size 1."""
    recs = [
        record("cut", corpus["good"].name, question="<image>\n" + "what shape " * 20, answer="a circle"),
        record("fits", corpus["good"].name),
    ]
    full = _build(tmp_path, corpus, processor, recs, model_max_length=4096)
    prompt_len = int((full[1]["labels"] != -100).nonzero()[0])
    ds = _build(tmp_path, corpus, processor, recs, model_max_length=prompt_len + 4)
    assert ds[0]["id"] == "fits" and ds.skipped == {"no target tokens": 1}
    assert "record cut: no answer token left" in caplog.text


# ----------------------------------------------------------------------------- encodings and nesting
def _records_bytes(corpus) -> bytes:
    return json.dumps([record("a", corpus["good"].name)]).encode()


def test_utf8_bom_is_accepted(tmp_path, corpus, processor):
    path = tmp_path / "llava_train.json"
    path.write_bytes(b"\xef\xbb\xbf" + _records_bytes(corpus))
    assert len(LazySupervisedDataset(path, processor, image_folder=corpus["good"].parent)) == 1


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_files_are_named_errors(encoding, tmp_path, corpus, processor):
    path = tmp_path / "llava_train.json"
    path.write_bytes(_records_bytes(corpus).decode().encode(encoding))
    with pytest.raises(BadRecordError, match=rf"{path}: the file (is|looks like) UTF-(16|32)"):
        LazySupervisedDataset(path, processor, image_folder=corpus["good"].parent)


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000,
        b'[{"id": "a", "x": ' + b'{"k": ' * 5000 + b"1" + b"}" * 5000 + b"}]",
        b'[{"conversations": [' + b"[" * 3000 + b"]" * 3000 + b"]}]",
    ],
)
def test_deeply_nested_json_is_refused_before_parsing(payload, tmp_path, corpus, processor):
    """ijson's memory grows with the square of the depth (100k levels would take tens of GB)."""
    path = tmp_path / "llava_train.json"
    path.write_bytes(payload)
    with pytest.raises(BadRecordError, match=rf"{path}: JSON nested deeper than 64 levels"):
        LazySupervisedDataset(path, processor, image_folder=corpus["good"].parent)


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path, corpus, processor):
    deep_text = "[" * 500 + '\\"{' * 300
    recs = [record("a", corpus["good"].name, answer=f"a circle {deep_text}")]
    ds = _build(tmp_path, corpus, processor, recs)
    assert len(ds) == 1 and not ds.skipped
