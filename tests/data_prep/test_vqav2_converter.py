"""data_prep.vqav2: exact outputs, split inference, sampling and every bad-input case."""

from __future__ import annotations

import json

import pytest
from official_fixtures import coco_name, dump, read_json, read_jsonl, vqa_annotation, vqa_annotations, vqa_questions

from data_prep.common import ConvertError
from data_prep.vqav2 import convert_vqav2, main

PROMPT = "Answer the question using a single word or phrase."


def _world(tmp_path, train_anns=None):
    raw = tmp_path / "raw"
    files = {
        "qtrain": vqa_questions(raw, "train2014", [(101, 1, "What color is it?"), (102, 2, "How many shapes?")]),
        "qval": vqa_questions(raw, "val2014", [(201, 11, "Is it red?"), (202, 12, "What shape?")]),
        "qdev": vqa_questions(raw, "test-dev2015", [(301, 21, "Where is the disk?")]),
        "atrain": vqa_annotations(
            raw,
            "train2014",
            train_anns
            if train_anns is not None
            else [vqa_annotation(101, 1, "red"), vqa_annotation(102, 2, "2", "number")],
        ),
        "aval": vqa_annotations(
            raw, "val2014", [vqa_annotation(201, 11, "yes", "yes/no"), vqa_annotation(202, 12, "square")]
        ),
    }
    return raw, files


def _convert(tmp_path, files, **kw):
    return convert_vqav2(
        [files["qtrain"], files["qval"], files["qdev"]],
        [files["atrain"], files["aval"]],
        images=tmp_path / "raw" / "images",
        out=tmp_path / "vqav2",
        **kw,
    )


def test_exact_outputs_all_splits(tmp_path, monkeypatch):
    raw, files = _world(tmp_path)
    monkeypatch.setattr(json, "load", lambda *a, **k: pytest.fail("big files must be streamed"))
    man = _convert(tmp_path, files)
    out = tmp_path / "vqav2"
    assert read_json(out / "llava_train.json") == [
        {
            "id": "101",
            "image": "train2014/" + coco_name("train2014", 1),
            "conversations": [
                {"from": "human", "value": f"<image>\nWhat color is it?\n{PROMPT}"},
                {"from": "gpt", "value": "red"},
            ],
        },
        {
            "id": "102",
            "image": "train2014/" + coco_name("train2014", 2),
            "conversations": [
                {"from": "human", "value": f"<image>\nHow many shapes?\n{PROMPT}"},
                {"from": "gpt", "value": "2"},
            ],
        },
    ]
    assert read_jsonl(out / "val_questions.jsonl") == [
        {"question_id": 201, "image": "val2014/" + coco_name("val2014", 11), "text": f"Is it red?\n{PROMPT}"},
        {"question_id": 202, "image": "val2014/" + coco_name("val2014", 12), "text": f"What shape?\n{PROMPT}"},
    ]
    # test-dev questions use the test2015 images; no annotations exist for them
    assert read_jsonl(out / "test-dev_questions.jsonl") == [
        {"question_id": 301, "image": "test2015/" + coco_name("test2015", 21), "text": f"Where is the disk?\n{PROMPT}"}
    ]
    assert not (out / "test-dev_annotations.json").exists()
    assert read_json(out / "val_questions.json") == read_json(files["qval"])
    assert read_json(out / "val_annotations.json") == read_json(files["aval"])
    assert read_json(out / "test-dev_questions.json")["data_subtype"] == "test-dev2015"
    assert man["counts"] == {"train": 2, "val": 2, "test-dev": 1}
    assert man["skipped"] == {"train": 0, "val": 0, "test-dev": 0}
    assert man["image_folder"] == "../raw/images"
    assert (out / "image_folder.txt").read_text().strip() == "../raw/images"
    assert read_json(out / "manifest.json") == man


def test_images_flat_folder(tmp_path):
    raw, files = _world(tmp_path)
    man = convert_vqav2(
        [files["qtrain"]], [files["atrain"]], images=raw / "images" / "train2014", out=tmp_path / "vqav2"
    )
    rec = read_json(tmp_path / "vqav2" / "llava_train.json")[0]
    assert rec["image"] == coco_name("train2014", 1)
    assert man["image_folder"] == "../raw/images/train2014"


def test_eval_files_restricted_to_kept_questions(tmp_path):
    raw, files = _world(tmp_path)
    (raw / "images" / "val2014" / coco_name("val2014", 12)).unlink()
    man = _convert(tmp_path, files)
    out = tmp_path / "vqav2"
    assert [q["question_id"] for q in read_jsonl(out / "val_questions.jsonl")] == [201]
    assert [q["question_id"] for q in read_json(out / "val_questions.json")["questions"]] == [201]
    assert [a["question_id"] for a in read_json(out / "val_annotations.json")["annotations"]] == [201]
    assert man["reasons"]["val"] == {"missing_image": 1}
    assert "question_id=202" in man["splits"]["val"]["examples"]["missing_image"][0]


def test_counted_skips(tmp_path):
    anns = [vqa_annotation(101, 1, "  "), vqa_annotation(999, 1, "orphan")]  # 102 has none
    raw, files = _world(tmp_path, train_anns=anns)
    man = _convert(tmp_path, files)
    assert man["counts"]["train"] == 0
    assert man["reasons"]["train"] == {"annotation_without_question": 1, "empty_answer": 1, "no_annotation": 1}
    assert read_json(tmp_path / "vqav2" / "llava_train.json") == []
    with pytest.raises(ConvertError, match="no_annotation|empty_answer"):
        _convert(tmp_path, files, strict=True)


def test_fraction_and_limit_are_deterministic(tmp_path):
    raw = tmp_path / "raw"
    qs = [(1000 + i, i, f"q{i}?") for i in range(1, 41)]
    q = vqa_questions(raw, "train2014", qs)
    a = vqa_annotations(raw, "train2014", [vqa_annotation(qid, i, "a") for qid, i, _ in qs])

    def ids(out, **kw):
        convert_vqav2([q], [a], images=raw / "images", out=tmp_path / out, **kw)
        return [r["id"] for r in read_json(tmp_path / out / "llava_train.json")]

    quarter, again, half = ids("a", fraction=0.25), ids("b", fraction=0.25), ids("c", fraction=0.5)
    assert len(quarter) == 10 and quarter == again and set(quarter) < set(half)
    assert ids("d", fraction=0.25, seed=1) != quarter
    assert len(ids("e", limit=3)) == 3
    src_order = [str(qid) for qid, _, _ in qs]
    assert quarter == [i for i in src_order if i in quarter]  # source order is preserved


@pytest.mark.parametrize(
    "case,match",
    [
        ("dup_question", "duplicated question_id 101"),
        ("dup_annotation", "duplicated question_id 101"),
        ("no_subtype", "data_subtype"),
        ("malformed", "malformed JSON in .*v2_mscoco_train2014_annotations.json: line 1 column"),
        ("missing_field", r"question #1 \(question_id=102\): missing field 'question'"),
        ("train_without_annotations", "needs its annotations file"),
    ],
)
def test_errors_name_file_and_record(tmp_path, case, match):
    raw, files = _world(tmp_path)
    qtrain = read_json(files["qtrain"])
    if case == "dup_question":
        qtrain["questions"].append(dict(qtrain["questions"][0]))
        dump(files["qtrain"], qtrain)
    elif case == "dup_annotation":
        dump(
            files["atrain"],
            {
                **read_json(files["atrain"]),
                "annotations": [vqa_annotation(101, 1, "red"), vqa_annotation(101, 1, "blue")],
            },
        )
    elif case == "no_subtype":
        del qtrain["data_subtype"]
        dump(files["qtrain"], qtrain)
    elif case == "malformed":
        files["atrain"].write_text('{"annotations": [{"question_id": 101,, }]}')
    elif case == "missing_field":
        del qtrain["questions"][1]["question"]
        dump(files["qtrain"], qtrain)
    if case == "train_without_annotations":
        with pytest.raises(ConvertError, match=match):
            convert_vqav2([files["qtrain"]], [], images=raw / "images", out=tmp_path / "o")
        return
    with pytest.raises(ConvertError, match=match):
        _convert(tmp_path, files)


def test_corrupt_image_is_a_skip_only_with_full_check(tmp_path):
    raw, files = _world(tmp_path)
    bad = raw / "images" / "train2014" / coco_name("train2014", 2)
    bad.write_bytes(bad.read_bytes()[:40])  # truncated JPEG
    assert _convert(tmp_path, files)["counts"]["train"] == 2
    man = _convert(tmp_path, files, check_images="full")
    assert man["counts"]["train"] == 1 and man["reasons"]["train"] == {"corrupt_image": 1}


def test_cli(tmp_path, capsys):
    raw, files = _world(tmp_path)
    argv = [
        "--questions",
        str(files["qtrain"]),
        str(files["qval"]),
        "--annotations",
        str(files["atrain"]),
        str(files["aval"]),
        "--images",
        str(raw / "images"),
        "--out",
        str(tmp_path / "vqav2"),
        "--eval-limit",
        "1",
    ]
    assert main(argv) == 0
    assert len(read_jsonl(tmp_path / "vqav2" / "val_questions.jsonl")) == 1
    assert "vqav2/train: 2 records" in capsys.readouterr().out
    assert (
        main(
            [
                "--questions",
                str(raw / "nope.json"),
                "--annotations",
                "--images",
                str(raw / "images"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "nope.json" in capsys.readouterr().err
