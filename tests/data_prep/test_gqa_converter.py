"""data_prep.gqa: exact outputs, split from file name, manifest merging, bad input."""

from __future__ import annotations

import pytest
from official_fixtures import dump, gqa_file, gqa_question, read_json, read_jsonl

from data_prep.common import ConvertError
from data_prep.gqa import convert_gqa, main

PROMPT = "Answer the question using a single word or phrase."


def _world(tmp_path):
    raw = tmp_path / "raw"
    train = gqa_file(
        raw,
        "train",
        {
            "t1": gqa_question("n1", "What color is the disk?", "red"),
            "t2": gqa_question("n2", "Is there a square?", "no"),
        },
    )
    dev = gqa_file(
        raw,
        "testdev",
        {"d1": gqa_question("n3", "Which shape is left?", "circle"), "d2": gqa_question("n4", "Is it big?", "yes")},
    )
    return raw, train, dev


def test_exact_outputs_and_manifest_merge(tmp_path):
    raw, train, dev = _world(tmp_path)
    out = tmp_path / "gqa"
    convert_gqa([train], images=raw / "gqa_images", out=out)
    man = convert_gqa([dev], images=raw / "gqa_images", out=out)
    assert read_json(out / "llava_train.json") == [
        {
            "id": "t1",
            "image": "n1.jpg",
            "conversations": [
                {"from": "human", "value": f"<image>\nWhat color is the disk?\n{PROMPT}"},
                {"from": "gpt", "value": "red"},
            ],
        },
        {
            "id": "t2",
            "image": "n2.jpg",
            "conversations": [
                {"from": "human", "value": f"<image>\nIs there a square?\n{PROMPT}"},
                {"from": "gpt", "value": "no"},
            ],
        },
    ]
    assert read_jsonl(out / "testdev_questions.jsonl") == [
        {"question_id": "d1", "image": "n3.jpg", "text": f"Which shape is left?\n{PROMPT}"},
        {"question_id": "d2", "image": "n4.jpg", "text": f"Is it big?\n{PROMPT}"},
    ]
    assert read_json(out / "testdev_questions.json") == read_json(dev)
    assert man["counts"] == {"train": 2, "testdev": 2}  # second run kept the first's split
    assert man["image_folder"] == "../raw/gqa_images"
    assert read_json(out / "manifest.json")["splits"]["train"]["files"] == ["llava_train.json"]


def test_split_override_and_unanswered_splits(tmp_path):
    raw = tmp_path / "raw"
    f = gqa_file(raw, "mine", {"s1": gqa_question("n9", "What is it?", None)})
    with pytest.raises(ConvertError, match="cannot infer the split"):
        convert_gqa([f], images=raw / "gqa_images", out=tmp_path / "gqa")
    with pytest.raises(ConvertError, match=r"question_id=s1: missing field 'answer'"):
        convert_gqa([f], split="val", images=raw / "gqa_images", out=tmp_path / "gqa")
    man = convert_gqa([f], split="submission", images=raw / "gqa_images", out=tmp_path / "gqa")
    assert man["counts"] == {"submission": 1}
    assert read_json(tmp_path / "gqa" / "submission_questions.json") == read_json(f)


def test_counted_skips_and_eval_limit(tmp_path):
    raw, train, dev = _world(tmp_path)
    data = read_json(train)
    data["t2"]["answer"] = ""
    data["t3"] = gqa_question("gone", "Where?", "left")
    dump(train, data)
    man = convert_gqa([train, dev], images=raw / "gqa_images", out=tmp_path / "gqa", eval_limit=1)
    assert man["reasons"]["train"] == {"empty_answer": 1, "missing_image": 1}
    assert man["counts"] == {"train": 1, "testdev": 1}
    assert "gone.jpg" in man["splits"]["train"]["examples"]["missing_image"][0]
    assert len(read_jsonl(tmp_path / "gqa" / "testdev_questions.jsonl")) == 1
    assert len(read_json(tmp_path / "gqa" / "testdev_questions.json")) == 1


def test_fraction_is_deterministic(tmp_path):
    raw = tmp_path / "raw"
    f = gqa_file(raw, "train", {f"q{i}": gqa_question(f"n{i}", "Q?", "a") for i in range(30)})

    def ids(out, **kw):
        convert_gqa([f], images=raw / "gqa_images", out=tmp_path / out, **kw)
        return {r["id"] for r in read_json(tmp_path / out / "llava_train.json")}

    a = ids("a", fraction=0.1)
    assert len(a) == 3 and a == ids("b", fraction=0.1) and a < ids("c", fraction=0.5)


@pytest.mark.parametrize(
    "case,match",
    [
        ("dup", "duplicated question id 't1'"),
        ("list", "top-level JSON value must be an object"),
        ("malformed", r"malformed JSON in .*train_balanced_questions.json: line 1 column"),
        ("two_for_split", "two files for one split"),
    ],
)
def test_errors(tmp_path, case, match):
    raw, train, dev = _world(tmp_path)
    files = [train]
    if case == "dup":
        text = train.read_text()
        train.write_text(text[:-1] + ', "t1": ' + text[text.index("{", 1) : text.index("}}") + 2] + "}")
    elif case == "list":
        dump(train, [])
    elif case == "malformed":
        train.write_text('{"t1": {"imageId": "n1" "question": "x"}}')
    elif case == "two_for_split":
        files = [train, train]
    with pytest.raises(ConvertError, match=match):
        convert_gqa(files, images=raw / "gqa_images", out=tmp_path / "gqa")


def test_image_folder_mismatch_across_runs(tmp_path):
    raw, train, dev = _world(tmp_path)
    convert_gqa([train], images=raw / "gqa_images", out=tmp_path / "gqa")
    with pytest.raises(ConvertError, match="image_folder"):
        convert_gqa([dev], images=raw, out=tmp_path / "gqa")


def test_cli(tmp_path, capsys):
    raw, train, dev = _world(tmp_path)
    argv = ["--questions", str(train), str(dev), "--images", str(raw / "gqa_images"), "--out", str(tmp_path / "gqa")]
    assert main(argv) == 0
    assert "gqa/testdev: 2 records" in capsys.readouterr().out
    assert main(argv + ["--fraction", "1.5"]) == 2
    assert "--fraction must be in (0, 1]" in capsys.readouterr().err
