"""data_prep.common (sampling, image checks, skips, manifest) and data_prep.jsonstream (streaming JSON I/O)."""

from __future__ import annotations

import json

import pytest
from official_fixtures import jpeg

from data_prep.common import (
    ConvertError,
    ImageChecker,
    JsonStreamWriter,
    SkipLog,
    atomic_open,
    iter_json,
    portable_path,
    read_header,
    select_subset,
    write_manifest,
)


def test_select_subset_is_deterministic_nested_and_order_free():
    keys = list(range(100))
    assert select_subset(keys) is None
    a = select_subset(keys, fraction=0.1, seed=0)
    assert len(a) == 10 and a == select_subset(list(reversed(keys)), fraction=0.1, seed=0)
    assert a < select_subset(keys, fraction=0.25, seed=0) < select_subset(keys, fraction=0.5)
    assert select_subset(keys, fraction=0.1, seed=1) != a
    assert select_subset(keys, fraction=1.0) == set(keys)
    assert len(select_subset(keys, fraction=0.5, limit=7)) == 7
    assert len(select_subset(keys[:3], fraction=0.01)) == 1  # never rounds a split to nothing
    assert select_subset([], fraction=0.5) == set()
    for bad in ({"fraction": 0.0}, {"fraction": 1.5}, {"limit": -1}):
        with pytest.raises(ConvertError):
            select_subset(keys, **bad)


def test_stream_writers_produce_valid_json(tmp_path):
    p = tmp_path / "x.json"
    for kind, items, expect in (
        ("list", [1, {"a": "é"}], [1, {"a": "é"}]),
        ("list", [], []),
        ("dict", [("k", [1])], {"k": [1]}),
        ("dict", [], {}),
    ):
        with atomic_open(p) as f:
            w = JsonStreamWriter(f, kind=kind)
            for item in items:
                w.add(item[1], key=item[0]) if kind == "dict" else w.add(item)
            w.close()
        assert json.loads(p.read_text(encoding="utf-8")) == expect
    with atomic_open(p) as f:
        w = JsonStreamWriter(f, head={"info": {"v": 1}}, key="images")
        w.add({"id": 1})
        w.switch("annotations")
        w.close()
    assert json.loads(p.read_text()) == {"info": {"v": 1}, "images": [{"id": 1}], "annotations": []}


def test_atomic_open_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "out.json"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(p) as f:
            f.write("half")
            raise RuntimeError("crash")
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["out.json"]


def test_iter_json_errors_name_file_and_position(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"questions": [\n {"question_id": 1},\n {"question_id": 2,}\n]}')
    with pytest.raises(ConvertError, match=r"malformed JSON in .*bad.json: line 3 column"):
        list(iter_json(p, "questions.item"))
    p.write_bytes(b'{"questions": [{"question": "caf\xe9"}]}')  # latin-1, not UTF-8
    with pytest.raises(ConvertError, match=r"malformed JSON in .*bad.json: .*utf-8"):
        list(iter_json(p, "questions.item"))
    with pytest.raises(ConvertError, match="input file not found"):
        list(iter_json(tmp_path / "none.json", "item"))
    p.write_text('{"data_subtype": "val2014", "questions": [], "info": {"year": 2015.5}}')
    assert read_header(p, ["info", "data_subtype", "absent"]) == {"info": {"year": 2015.5}, "data_subtype": "val2014"}


def test_image_checker_modes(tmp_path):
    good = jpeg(tmp_path / "sub" / "good.jpg")
    (tmp_path / "sub" / "bad.jpg").write_bytes(good.read_bytes()[:30])
    full = ImageChecker(tmp_path, "full")
    assert full.problem("sub/good.jpg") is None
    assert full.problem("sub/bad.jpg") == "corrupt_image"
    assert full.problem("sub/none.jpg") == "missing_image"
    assert ImageChecker(tmp_path, "exists").problem("sub/bad.jpg") is None
    assert ImageChecker(tmp_path, "none").problem("sub/none.jpg") is None
    assert full.in_subdir("sub", "a.jpg") == "sub/a.jpg" and full.in_subdir("x", "a.jpg") == "a.jpg"
    with pytest.raises(ConvertError, match="image folder not found"):
        ImageChecker(tmp_path / "nope")
    with pytest.raises(ConvertError, match="--check-images"):
        ImageChecker(tmp_path, "fast")


def test_portable_path(tmp_path):
    assert portable_path(tmp_path / "raw" / "images", tmp_path / "coco") == "../raw/images"
    outside = tmp_path / "elsewhere" / "imgs"
    assert portable_path(outside, tmp_path / "root" / "coco") == str(outside.resolve())


def test_skip_log_counts_caps_examples_and_strict():
    log = SkipLog(max_examples=2)
    for i in range(5):
        log.skip("train", "missing_image", f"f.json: record {i}")
    assert log.summary("train") == {
        "skipped": 5,
        "reasons": {"missing_image": 5},
        "examples": {"missing_image": ["f.json: record 0", "f.json: record 1"]},
    }
    assert log.summary("val") == {"skipped": 0, "reasons": {}, "examples": {}}
    with pytest.raises(ConvertError, match="f.json: record 9: empty_answer"):
        SkipLog(strict=True).skip("train", "empty_answer", "f.json: record 9")


def test_manifest_merges_splits_and_refuses_other_image_folder(tmp_path):
    entry = {"count": 3, "skipped": 1, "reasons": {"missing_image": 1}}
    write_manifest(tmp_path, "gqa", "../img", {"train": entry})
    man = write_manifest(tmp_path, "gqa", "../img", {"testdev": {**entry, "count": 2}})
    assert man["counts"] == {"train": 3, "testdev": 2}
    assert man["reasons"]["train"] == {"missing_image": 1}
    assert json.loads((tmp_path / "manifest.json").read_text()) == man
    with pytest.raises(ConvertError, match="image_folder"):
        write_manifest(tmp_path, "gqa", "/other", {"val": entry})
    assert write_manifest(tmp_path, "gqa", "/other", {"train": entry, "testdev": entry})["counts"] == {
        "train": 3,
        "testdev": 3,
    }


def test_big_malformed_file_reports_byte_offset(tmp_path, monkeypatch):
    import data_prep.jsonstream as jsonstream

    monkeypatch.setattr(jsonstream, "_EXACT_POSITION_MAX_BYTES", 0)  # as for a 330 MB file
    p = tmp_path / "big.json"
    p.write_text('{"annotations": [' + ",".join(['{"a": 1}'] * 50) + ",,]}")
    with pytest.raises(ConvertError, match=r"malformed JSON in .*big.json: near byte \d+ \(parse error"):
        list(iter_json(p, "annotations.item"))


def test_sampling_checks_up_front_and_samples_train_and_eval_splits_apart():
    from data_prep.common import Sampling

    with pytest.raises(ConvertError, match="--fraction"):
        Sampling(fraction=1.5)
    s = Sampling(limit=3, eval_limit=2, seed=1)
    keys = list(range(10))
    assert len(s.keep(keys, True)) == 3 and len(s.keep(keys, False)) == 2
    assert Sampling().keep(keys, True) == set(keys)
    assert s.options(False) == {"limit": 2, "fraction": None, "seed": 1, "check_images": "exists", "strict": False}
