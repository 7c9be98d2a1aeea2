"""data_prep.coco: exact outputs, file/Karpathy splits, per-image sampling, bad input."""

from __future__ import annotations

import pytest
from official_fixtures import coco_captions, coco_name, dump, karpathy, read_json, read_jsonl

from data_prep.coco import convert_coco, main
from data_prep.common import ConvertError

PROMPT = "Provide a one-sentence caption for the provided image."


def _world(tmp_path):
    raw = tmp_path / "raw"
    return raw, coco_captions(raw, "train2014", [1, 2, 3]), coco_captions(raw, "val2014", [11, 12])


def _rec(rec_id, subtype, iid, text):
    return {
        "id": rec_id,
        "image": f"{subtype}/{coco_name(subtype, iid)}",
        "conversations": [{"from": "human", "value": f"<image>\n{PROMPT}"}, {"from": "gpt", "value": text}],
    }


def test_file_splits_exact_outputs(tmp_path):
    raw, train, val = _world(tmp_path)
    man = convert_coco([train, val], images=raw / "images", out=tmp_path / "coco")
    out = tmp_path / "coco"
    assert read_json(out / "llava_train.json") == [
        _rec(str(10 * i + k), "train2014", i, f"shape {i} number {k}.") for i in (1, 2, 3) for k in (0, 1)
    ]
    assert read_jsonl(out / "val_questions.jsonl") == [
        {"question_id": i, "image": f"val2014/{coco_name('val2014', i)}", "text": PROMPT} for i in (11, 12)
    ]
    refs = read_json(out / "val_annotations.json")
    src = read_json(val)
    assert refs == {
        "info": src["info"],
        "licenses": src["licenses"],
        "type": "captions",
        "images": src["images"],
        "annotations": src["annotations"],
    }
    assert not (out / "test_questions.jsonl").exists()
    assert man["counts"] == {"train": 6, "val": 2}
    assert man["splits"]["val"]["references"] == 4
    assert man["image_folder"] == "../raw/images"


def test_karpathy_splits(tmp_path):
    raw, train, val = _world(tmp_path)
    kp = karpathy(raw, {1: "train", 2: "restval", 3: "test", 11: "restval", 12: "val"})
    man = convert_coco([train, val], karpathy=kp, images=raw / "images", out=tmp_path / "coco")
    out = tmp_path / "coco"
    train_ids = [r["id"] for r in read_json(out / "llava_train.json")]
    assert train_ids == ["10", "11", "20", "21", "110", "111"]  # restval (val2014 image 11) joins train
    assert [q["question_id"] for q in read_jsonl(out / "val_questions.jsonl")] == [12]
    assert [q["question_id"] for q in read_jsonl(out / "test_questions.jsonl")] == [3]
    test_refs = read_json(out / "test_annotations.json")
    assert [im["id"] for im in test_refs["images"]] == [3]
    assert sorted(a["id"] for a in test_refs["annotations"]) == [30, 31]
    assert man["counts"] == {"train": 6, "val": 1, "test": 1}


def test_karpathy_mismatches_are_counted(tmp_path):
    raw, train, val = _world(tmp_path)
    kp = karpathy(raw, {1: "train", 2: "train", 11: "val", 12: "test", 99: "test"})  # 3 absent
    man = convert_coco([train, val], karpathy=kp, images=raw / "images", out=tmp_path / "coco")
    assert man["reasons"]["train"] == {"not_in_karpathy_split": 1}
    assert man["reasons"]["test"] == {"karpathy_image_not_in_captions": 1}
    assert man["counts"] == {"train": 4, "val": 1, "test": 1}


def test_per_image_uses_first_caption(tmp_path):
    raw, train, _ = _world(tmp_path)
    convert_coco([train], images=raw / "images", out=tmp_path / "coco", per="image")
    assert read_json(tmp_path / "coco" / "llava_train.json") == [
        _rec(str(i), "train2014", i, f"shape {i} number 0.") for i in (1, 2, 3)
    ]


def test_fraction_samples_whole_images_deterministically(tmp_path):
    raw = tmp_path / "raw"
    train = coco_captions(raw, "train2014", list(range(1, 21)), n_caps=3)

    def images_of(out, **kw):
        man = convert_coco([train], images=raw / "images", out=tmp_path / out, **kw)
        recs = read_json(tmp_path / out / "llava_train.json")
        ids = {r["image"] for r in recs}
        assert len(recs) == 3 * len(ids) == man["counts"]["train"]  # all captions of an image
        return ids, man

    a, man = images_of("a", fraction=0.25)
    assert len(a) == 5 and man["splits"]["train"]["images"] == 5
    assert images_of("b", fraction=0.25)[0] == a
    assert a < images_of("c", fraction=0.5)[0]
    assert images_of("d", fraction=0.25, seed=3)[0] != a
    assert len(images_of("e", limit=2)[0]) == 2


def test_bad_images_and_captions_are_counted_skips(tmp_path):
    raw, train, val = _world(tmp_path)
    (raw / "images" / "train2014" / coco_name("train2014", 1)).unlink()
    (raw / "images" / "train2014" / coco_name("train2014", 2)).write_bytes(b"not a jpeg")
    data = read_json(val)
    data["annotations"] = [a if a["image_id"] != 12 else {**a, "caption": " "} for a in data["annotations"]]
    dump(val, data)
    man = convert_coco([train, val], images=raw / "images", out=tmp_path / "coco", check_images="full")
    assert man["reasons"]["train"] == {"corrupt_image": 1, "missing_image": 1}
    assert man["reasons"]["val"] == {"empty_caption": 2, "no_captions": 1}
    assert man["counts"] == {"train": 2, "val": 1}
    assert [im["id"] for im in read_json(tmp_path / "coco" / "val_annotations.json")["images"]] == [11]
    with pytest.raises(ConvertError, match="missing_image .*--strict"):
        convert_coco([train, val], images=raw / "images", out=tmp_path / "coco", strict=True)


@pytest.mark.parametrize(
    "case,match",
    [
        ("dup_image", "duplicated image id 1"),
        ("dup_annotation", "duplicated annotation id 10"),
        ("unknown_image", "annotation id=10: image_id 77 is not in 'images'"),
        ("malformed", r"malformed JSON in .*captions_train2014.json: line \d+ column"),
        ("missing_field", r"annotation #0 \(id=10\): missing field 'caption'"),
        ("no_annotations", "no top-level 'annotations' array"),
    ],
)
def test_errors_name_file_and_record(tmp_path, case, match):
    raw, train, val = _world(tmp_path)
    data = read_json(train)
    if case == "dup_image":
        data["images"].append(dict(data["images"][0]))
    elif case == "dup_annotation":
        data["annotations"][1]["id"] = 10
    elif case == "unknown_image":
        data["annotations"][0]["image_id"] = 77
    elif case == "missing_field":
        del data["annotations"][0]["caption"]
    elif case == "no_annotations":
        del data["annotations"]
    dump(train, data)
    if case == "malformed":
        train.write_text(train.read_text()[:-30])
    with pytest.raises(ConvertError, match=match):
        convert_coco([train, val], images=raw / "images", out=tmp_path / "coco")


def test_cli(tmp_path, capsys):
    raw, train, val = _world(tmp_path)
    out = tmp_path / "coco"
    assert (
        main(
            [
                "--captions",
                str(train),
                str(val),
                "--images",
                str(raw / "images"),
                "--out",
                str(out),
                "--per",
                "image",
                "--check-images",
                "none",
            ]
        )
        == 0
    )
    assert len(read_json(out / "llava_train.json")) == 3
    assert "coco/train: 3 records" in capsys.readouterr().out
    assert main(["--captions", str(train), "--images", str(raw / "nope"), "--out", str(out)]) == 2
    assert "image folder not found" in capsys.readouterr().err
