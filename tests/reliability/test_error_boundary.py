"""One error boundary per entry point: a user error prints the file, the record or line
and what is wrong, exits 2, and shows no traceback.

Entry points: train, finetune, evaluation, convert, metrics, merge, release, the converters,
build_default, build_base. Input classes: missing / corrupt / bomb images at evaluation, malformed
adapter configs, torn answers files, unwritable outputs, UTF-16, BOM, deep nesting, converter
outputs the scorer would reject, image paths leaving ``--images``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import write_json
from .killer import REPO, child_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_prep"))
from official_fixtures import (  # noqa: E402,E501
    coco_captions,
    gqa_file,
    gqa_question,
    jpeg,
    vqa_annotation,
    vqa_annotations,
    vqa_questions,
)


def _clean(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    return err


# ----------------------------------------------------------------------------- the boundary itself
def test_run_main_sorts_user_errors_from_bugs(capsys):
    from llava_structlora.utils.errors import UserError, run_main

    def fails(exc):
        def fn(_):
            raise exc

        return fn

    for exc in (
        UserError("a.json:3: bad"),
        FileNotFoundError(2, "No such file", "/x/y"),
        RecursionError("deep"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        NotADirectoryError(20, "nope", "/f"),
    ):
        assert run_main(fails(exc), [], "t") == 2
        assert capsys.readouterr().err.startswith("[t] error: ")
    with pytest.raises(KeyError):  # a bug keeps its traceback
        run_main(fails(KeyError("x")), [], "t")


# ----------------------------------------------------------------------------- evaluation
def _eval_data(tmp_path: Path, image: Path) -> Path:
    root = tmp_path / "data"
    (root / "gqa").mkdir(parents=True)
    shutil.copy(image, root / "gqa" / image.name)
    (root / "gqa" / "manifest.json").write_text(json.dumps({"task": "gqa", "image_folder": "."}))
    (root / "gqa" / "testdev_questions.jsonl").write_text(
        json.dumps({"question_id": "q1", "image": image.name, "text": "what colour?"}) + "\n"
    )
    write_json(root / "gqa" / "testdev_questions.json", {"q1": gqa_question("x", "what colour?", "red")})
    return root


@pytest.mark.parametrize("kind", ["missing", "corrupt_jpeg", "truncated_png", "empty_file", "not_an_image"])
def test_evaluation_bad_image_names_the_file(kind, tmp_path, corpus, tiny_base, capsys):
    from llava_structlora.evaluation.__main__ import main

    src = corpus[kind] if kind != "missing" else corpus["good"]
    root = _eval_data(tmp_path, src)
    if kind == "missing":
        (root / "gqa" / src.name).unlink()
    argv = [
        "--task",
        "gqa",
        "--split",
        "testdev",
        "--model",
        str(tiny_base),
        "--data-root",
        str(root),
        "--output-dir",
        str(tmp_path / "eval"),
        "--batch-size",
        "1",
        "--max-new-tokens",
        "2",
    ]
    assert main(argv) == 2
    _clean(capsys, src.name)


@pytest.mark.parametrize(
    "content",
    [
        '{"peft_type": "LORA", "r": ',
        "",
        "[1, 2]",
        '{"peft_type": 5}',
        '\ufeff{"peft_type": ',
        '{"a": ' * 3000 + "1" + "}" * 3000,
    ],
)
def test_malformed_adapter_config_names_its_path(content, tmp_path, tiny_base, peft_adapter, capsys):
    from llava_structlora.evaluation.__main__ import main
    from llava_structlora.merge import main as merge_main
    from llava_structlora.release import main as release_main

    bad = tmp_path / "adapter"
    shutil.copytree(peft_adapter, bad)
    (bad / "adapter_config.json").write_text(content, encoding="utf-8")
    cfg = str(bad / "adapter_config.json")
    root = _eval_data(tmp_path, Path(__file__))  # never reached: the adapter is checked first
    argv = [
        "--task",
        "gqa",
        "--split",
        "testdev",
        "--model",
        str(tiny_base),
        "--adapter",
        str(bad),
        "--data-root",
        str(root),
        "--output-dir",
        str(tmp_path / "eval"),
    ]
    assert main(argv) == 2
    _clean(capsys, cfg)
    assert merge_main([str(bad), str(tmp_path / "merged"), "--base", str(tiny_base)]) == 2
    _clean(capsys, "adapter_config.json")
    assert release_main([str(bad), str(tmp_path / "rel"), "--base-id", "x/y"]) == 2
    _clean(capsys, cfg)


# ----------------------------------------------------------------------------- convert (answers -> results)
@pytest.mark.parametrize(
    "content,needle",
    [
        (
            b'{"question_id": 1, "text": "red"}\n{"question_id": 2, "te',
            ":2: not valid JSON (the last line is cut short",
        ),
        (b'{"question_id": 1, "text": "red"}\n{"question_id": 2}\n', ":2: an answer needs"),
        (b'{"question_id": 1, "text": caf\xe9}\n', ":1: not UTF-8"),
        (b'[{"question_id": 1, "text": "red"}]\n', ":1: an answer needs"),
        ('{"question_id": 1, "text": "red"}\n'.encode("utf-16"), ":1: not UTF-8"),
    ],
    ids=["torn_last_line", "missing_text", "latin1", "a_list", "utf16"],
)
def test_convert_bad_answers_file_names_file_and_line(content, needle, tmp_path, capsys):
    from llava_structlora.evaluation.convert import main

    answers = tmp_path / "answers.jsonl"
    answers.write_bytes(content)
    assert main(["--task", "vqav2", "--answers", str(answers), "--out", str(tmp_path / "r.json")]) == 2
    _clean(capsys, f"{answers}{needle}")


def test_convert_accepts_bom_and_unwritable_out_is_clean(tmp_path, capsys):
    from llava_structlora.evaluation.convert import main

    answers = tmp_path / "answers.jsonl"
    answers.write_bytes(b'\xef\xbb\xbf{"question_id": 1, "text": "red"}\n')
    assert main(["--task", "vqav2", "--answers", str(answers), "--out", str(tmp_path / "r.json")]) == 0
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["--task", "vqav2", "--answers", str(answers), "--out", str(blocker / "sub" / "r.json")]) == 2
    _clean(capsys, str(blocker))


# ----------------------------------------------------------------------------- metrics
@pytest.mark.parametrize(
    "content,needle",
    [
        ('[{"questionId": "1", "prediction": "red"}]'.encode("utf-16"), "UTF-16"),
        (b"[" * 50_000 + b"]" * 50_000, "nested"),
        (b'[{"questionId": "1", "prediction": "red"},\n {"questionId": "2", ', "line 2 column"),
        (b'\xef\xbb\xbf[{"questionId": "1", "prediction": "red"},\n {"questionId": 2 "x"}]', "line 2 column"),
    ],
    ids=["utf16", "deep", "torn", "bom_then_malformed"],
)
def test_metrics_bad_results_file_named(content, needle, tmp_path, capsys):
    from llava_structlora.metrics.__main__ import main

    q = write_json(tmp_path / "testdev_balanced_questions.json", {"1": gqa_question("x", "q?", "red")})
    r = tmp_path / "results.json"
    r.write_bytes(content)
    assert main(["gqa", "--questions", str(q), "--results", str(r)]) == 2
    _clean(capsys, str(r), needle)


def test_metrics_accepts_a_bom(tmp_path, capsys):
    from llava_structlora.metrics.__main__ import main

    q = write_json(tmp_path / "testdev_balanced_questions.json", {"1": gqa_question("x", "q?", "red")})
    r = tmp_path / "results.json"
    r.write_bytes(b'\xef\xbb\xbf[{"questionId": "1", "prediction": "red"}]')
    assert main(["gqa", "--questions", str(q), "--results", str(r)]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 100.0


# ----------------------------------------------------------------------------- converters
@pytest.mark.parametrize(
    "bad_answers,where",
    [
        ([None] * 10, "answers[0]"),
        ([{"answer": None}] + [{"answer": "red"}] * 9, "answers[0]"),
        ([{"answer": "red"}] * 9 + [{"answer": ["red"]}], "answers[9]"),
        ([], "empty 'answers' list"),
    ],
)
def test_vqav2_converter_refuses_what_the_scorer_would_reject(bad_answers, where, tmp_path, capsys):
    from data_prep.vqav2 import main

    raw = tmp_path / "raw"
    q = vqa_questions(raw, "val2014", [(1, 1, "what colour?"), (2, 1, "what shape?")])
    anns = [vqa_annotation(1, 1, "red"), {**vqa_annotation(2, 1, "circle"), "answers": bad_answers}]
    a = vqa_annotations(raw, "val2014", anns)
    assert (
        main(
            [
                "--questions",
                str(q),
                "--annotations",
                str(a),
                "--images",
                str(raw / "images"),
                "--out",
                str(tmp_path / "vqav2"),
            ]
        )
        == 2
    )
    _clean(capsys, str(a), "question_id=2", where)


@pytest.mark.parametrize("image_id", ["../../etc/passwd", "../secret", "/abs/path", "sub/../../x", "..\\win"])
def test_gqa_image_ids_leaving_images_are_named_skips(image_id, tmp_path):
    from data_prep.gqa import convert_gqa

    raw = tmp_path / "raw"
    jpeg(raw / "images" / "ok.jpg")
    q = gqa_file(raw, "train", {"1": gqa_question("ok", "q?", "red"), "2": gqa_question(image_id, "q?", "red")})
    for check in ("none", "exists"):
        man = convert_gqa([str(q)], images=str(raw / "images"), out=str(tmp_path / f"gqa_{check}"), check_images=check)
        assert man["counts"]["train"] == 1 and man["reasons"]["train"] == {"image_path_outside_images": 1}
        assert "question_id=2" in man["splits"]["train"]["examples"]["image_path_outside_images"][0]


@pytest.mark.parametrize("file_name", ["../../outside.jpg", "/etc/hostname", "train2014/../../x.jpg"])
def test_coco_file_names_leaving_images_are_named_skips(file_name, tmp_path):
    from data_prep.coco import convert_coco

    raw = tmp_path / "raw"
    cap = coco_captions(raw, "train2014", [1, 2])
    data = json.loads(cap.read_text())
    data["images"][1]["file_name"] = file_name
    cap.write_text(json.dumps(data))
    man = convert_coco([str(cap)], images=str(raw / "images"), out=str(tmp_path / "coco"))
    assert man["reasons"]["train"] == {"image_path_outside_images": 1}
    assert "image id=2" in man["splits"]["train"]["examples"]["image_path_outside_images"][0]


@pytest.mark.parametrize(
    "content,needle",
    [
        ('{"1": {"imageId": "ok", "question": "q?", "answer": "red"}}'.encode("utf-16"), "UTF-16"),
        (b'{"1": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001, "nested deeper than 64"),
        (b'\xef\xbb\xbf{"1": {"imageId": "ok", "question": "q?",\n "answer": }}', "line 2 column"),
    ],
    ids=["utf16", "deep", "bom_then_malformed"],
)
def test_converter_encodings_and_nesting_are_named(content, needle, tmp_path, capsys):
    from data_prep.gqa import main

    raw = tmp_path / "raw"
    jpeg(raw / "images" / "ok.jpg")
    q = raw / "train_balanced_questions.json"
    q.write_bytes(content)
    assert main(["--questions", str(q), "--images", str(raw / "images"), "--out", str(tmp_path / "gqa")]) == 2
    _clean(capsys, str(q), needle)


def test_converter_accepts_a_bom(tmp_path):
    from data_prep.gqa import convert_gqa

    raw = tmp_path / "raw"
    jpeg(raw / "images" / "ok.jpg")
    q = raw / "train_balanced_questions.json"
    q.write_bytes(b"\xef\xbb\xbf" + json.dumps({"1": gqa_question("ok", "q?", "red")}).encode())
    assert convert_gqa([str(q)], images=str(raw / "images"), out=str(tmp_path / "gqa"))["counts"]["train"] == 1


# ----------------------------------------------------------------------------- real processes
@pytest.mark.parametrize(
    "module,args",
    [
        ("data_prep.build_default", ["--root", "{user}", "--preset", "smoke"]),
        ("llava_structlora.toy.build_base", ["--data", "{tmp}", "--out", "{user}", "--preset", "smoke"]),
        ("llava_structlora.toy.build_base", ["--data", "{tmp}/nope", "--out", "{tmp}/base", "--preset", "smoke"]),
        ("llava_structlora.metrics", ["caption", "--annotations", "{tmp}/nope.json", "--results", "{tmp}/r.json"]),
        (
            "llava_structlora.train",
            ["--model_name_or_path", "{tmp}", "--data_path", "{tmp}/d.json", "--output_dir", "{tmp}/o"],
        ),
    ],
)
def test_python_m_entry_points_exit_2_without_traceback(module, args, tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine\n")
    argv = [a.format(tmp=tmp_path, user=user) for a in args]
    res = subprocess.run(
        [sys.executable, "-m", module, *argv], cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "error" in res.stderr
    assert (user / "notes.txt").read_text() == "mine\n"
