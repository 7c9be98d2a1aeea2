"""Data loss: merge / release never replace what they do not own.

A non-empty OUT is refused unless ``--overwrite`` is given *and* OUT is a previous output of the
same kind (its marker says so); OUT equal to, inside or above the run or the base is always
refused. Each refusal exits 2 and leaves every byte that was there.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def run_dir(tmp_path, peft_adapter) -> Path:
    """A bare PEFT adapter dir (base recorded in adapter_config.json) inside an outputs/ tree."""
    run = tmp_path / "outputs" / "run-a"
    shutil.copytree(peft_adapter, run)
    other = tmp_path / "outputs" / "run-b"
    shutil.copytree(peft_adapter, other)
    return run


def _cli(kind: str):
    if kind == "merge":
        from llava_structlora.merge import main
    else:
        from llava_structlora.release import main
    return main


def _user_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "my_stuff"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "data.csv").write_text("1,2,3\n")
    return folder


@pytest.mark.parametrize("kind", ["merge", "release"])
@pytest.mark.parametrize(
    "case",
    ["user_folder", "run_dir", "parent_of_run", "outputs_root", "inside_run", "base_dir", "inside_base", "a_file"],
)
def test_out_that_would_destroy_data_is_refused(kind, case, tmp_path, run_dir, tiny_base, capsys):
    out = {
        "user_folder": lambda: _user_folder(tmp_path),
        "run_dir": lambda: run_dir,
        "parent_of_run": lambda: run_dir.parent,
        "outputs_root": lambda: tmp_path,
        "inside_run": lambda: run_dir / "merged",
        "base_dir": lambda: tiny_base,
        "inside_base": lambda: tiny_base / "out",
        "a_file": lambda: run_dir / "adapter_config.json",
    }[case]()
    watched = [tmp_path, tiny_base]
    before = [_snapshot(w) for w in watched]
    argv = [str(run_dir), str(out), "--overwrite"] + (["--base", str(tiny_base)] if kind == "merge" else [])
    assert _cli(kind)(argv) == 2
    err = capsys.readouterr().err
    assert "refusing" in err and str(out) in err, err
    assert [_snapshot(w) for w in watched] == before  # not one byte lost or added


@pytest.mark.parametrize("kind", ["merge", "release"])
def test_previous_output_needs_overwrite_and_same_kind(kind, tmp_path, run_dir, capsys):
    out = tmp_path / "deliverable"
    assert _cli(kind)([str(run_dir), str(out)]) == 0
    first = _snapshot(out)
    assert _cli(kind)([str(run_dir), str(out)]) == 2  # no flag: refused, untouched
    assert "--overwrite" in capsys.readouterr().err and _snapshot(out) == first
    assert _cli(kind)([str(run_dir), str(out), "--overwrite"]) == 0  # our own previous output: replaced
    other = "release" if kind == "merge" else "merge"
    capsys.readouterr()
    assert _cli(other)([str(run_dir), str(out), "--overwrite"]) == 2  # another kind's output: refused
    assert f"is a {'merged-model' if kind == 'merge' else 'release'} output" in capsys.readouterr().err


def test_empty_out_dir_is_fine(tmp_path, run_dir):
    out = tmp_path / "empty"
    out.mkdir()
    assert _cli("release")([str(run_dir), str(out)]) == 0
    assert (out / "adapter_model.safetensors").is_file() and (out / "SHA256SUMS").is_file()


@pytest.mark.parametrize("how", ["symlink_to_run", "dotdot_into_run"])
def test_path_tricks_resolve_to_the_run(how, tmp_path, run_dir):
    """A symlink or a `..` path that lands on the run is the run."""
    if how == "symlink_to_run":
        out = tmp_path / "link"
        out.symlink_to(run_dir)
    else:
        out = tmp_path / "x" / ".." / "outputs" / "run-a"
        (tmp_path / "x").mkdir()
    before = _snapshot(run_dir)
    assert _cli("release")([str(run_dir), str(out), "--overwrite"]) == 2
    assert _snapshot(run_dir) == before


def test_check_output_dir_marker_with_garbage_is_not_ours(tmp_path):
    from llava_structlora.utils.io import OUTPUT_MARKER, OutputDirError, check_output_dir

    out = tmp_path / "out"
    out.mkdir()
    (out / OUTPUT_MARKER).write_text("not json")
    (out / "keep.txt").write_text("x")
    with pytest.raises(OutputDirError, match="not a release output"):
        check_output_dir(out, "release", overwrite=True)


# ----------------------------------------------------------------------------- converters and cached builds
def _gqa_raw(root: Path, image_ids=("1", "2")) -> tuple[Path, Path]:
    import json

    from PIL import Image

    images = root / "gqa_images"
    images.mkdir(parents=True, exist_ok=True)
    for iid in image_ids:
        Image.new("RGB", (8, 8), (200, 30, 30)).save(images / f"{iid}.jpg")
    qs = {
        f"q{i}": {
            "imageId": iid,
            "question": "what colour?",
            "answer": "red",
            "fullAnswer": "It is red.",
            "types": {"structural": "query", "semantic": "attr", "detailed": "color"},
        }
        for i, iid in enumerate(image_ids)
    }
    path = root / "train_balanced_questions.json"
    path.write_text(json.dumps(qs))
    return path, images


def _coco_task_dir(tmp_path: Path) -> Path:
    """A real coco conversion (its llava_train.json + manifest say task coco)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_prep"))
    from official_fixtures import coco_captions, coco_name, jpeg

    from data_prep.coco import convert_coco

    raw = tmp_path / "raw_coco"
    for iid in (1, 2):
        jpeg(raw / "images" / coco_name("train2014", iid))
    cap = coco_captions(raw, "train2014", [1, 2])
    out = tmp_path / "data" / "coco"
    convert_coco([str(cap)], images=str(raw / "images"), out=str(out))
    return out


def test_converter_refuses_another_tasks_output(tmp_path):
    from data_prep.common import ConvertError
    from data_prep.gqa import convert_gqa

    coco_dir = _coco_task_dir(tmp_path)
    before = _snapshot(coco_dir)
    questions, images = _gqa_raw(tmp_path)
    with pytest.raises(ConvertError, match=r"holds a 'coco' task's output.*refusing to replace it with 'gqa'"):
        convert_gqa([str(questions)], images=str(images), out=str(coco_dir))
    assert _snapshot(coco_dir) == before


@pytest.mark.parametrize("foreign", ["llava_train.json", "val_questions.jsonl", "manifest_unreadable"])
def test_converter_refuses_foreign_files_of_its_names(foreign, tmp_path):
    from data_prep.common import ConvertError
    from data_prep.gqa import convert_gqa

    out = tmp_path / "mine"
    out.mkdir()
    name = "manifest.json" if foreign == "manifest_unreadable" else foreign
    (out / name).write_text("my own hand-made file\n")
    questions, images = _gqa_raw(tmp_path)
    with pytest.raises(ConvertError, match=str(out)):
        convert_gqa([str(questions)], images=str(images), out=str(out))
    assert (out / name).read_text() == "my own hand-made file\n"


def test_converter_same_task_reruns_and_unrelated_files_are_fine(tmp_path):
    from data_prep.gqa import convert_gqa

    questions, images = _gqa_raw(tmp_path)
    out = tmp_path / "gqa"
    out.mkdir()
    (out / "README.txt").write_text("notes\n")  # not a converter file name: left alone
    assert convert_gqa([str(questions)], images=str(images), out=str(out))["counts"]["train"] == 2
    assert convert_gqa([str(questions)], images=str(images), out=str(out))["counts"]["train"] == 2  # same task
    assert (out / "README.txt").read_text() == "notes\n"


def test_converter_out_equal_to_or_above_images_is_refused(tmp_path):
    from data_prep.common import ConvertError
    from data_prep.gqa import convert_gqa

    questions, images = _gqa_raw(tmp_path)
    for out in (images, images.parent):
        with pytest.raises(ConvertError, match="image folder"):
            convert_gqa([str(questions)], images=str(images), out=str(out))


@pytest.mark.parametrize("builder", ["build_default", "build_base"])
def test_cached_builders_refuse_a_folder_that_is_not_theirs(builder, tmp_path, capsys):
    from llava_structlora.utils.errors import run_main

    folder = _user_folder(tmp_path)
    before = _snapshot(folder)
    if builder == "build_default":
        from data_prep.build_default import main

        argv = ["--root", str(folder), "--preset", "smoke"]
    else:
        from llava_structlora.toy.build_base import main

        argv = ["--data", str(tmp_path), "--out", str(folder), "--preset", "smoke"]
    assert run_main(main, argv, builder) == 2
    assert "refusing" in capsys.readouterr().err
    assert _snapshot(folder) == before
