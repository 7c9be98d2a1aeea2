"""build_default: shapes world through the official converters, cached, crash-safe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import data_prep.build_default as bd

TASKS = ("coco", "vqav2", "gqa", "pretrain_captions", "pretrain_vqa", "pretrain")


def _json(p: Path):
    return json.loads(p.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("bd") / "smoke"
    return root, bd.build_default(root, "smoke", seed=0)


def test_every_task_converted_without_skips(built):
    root, stamp = built
    assert not stamp["cached"] and (root / bd.STAMP).is_file()
    for task in TASKS:
        m = _json(root / task / "manifest.json")
        assert all(v == 0 for v in m["skipped"].values()), (task, m["reasons"])
        folder = root / task / m["image_folder"]
        assert not Path(m["image_folder"]).is_absolute() and folder.is_dir(), task
        if (root / task / "llava_train.json").is_file():
            recs = _json(root / task / "llava_train.json")
            assert recs and all((folder / r["image"]).is_file() for r in recs[:50]), task
        assert str(root.parent / ".smoke.") not in json.dumps(m)  # no temp-dir paths left
    c = stamp["counts"]
    assert c["coco"] == {"train": 48 * 5 + 4 * 5, "val": 16, "test": 16}
    assert set(c["vqav2"]) == {"train", "val", "test-dev"} and set(c["gqa"]) == {"train", "val", "testdev"}
    assert c["pretrain"]["train"] == c["pretrain_captions"]["train"] + c["pretrain_vqa"]["train"]


def test_pretrain_set_mixes_styles_and_labels_val_families(built):
    root, _ = built
    recs = _json(root / "pretrain/llava_train.json")
    kinds = {r["id"].split("-")[0] for r in recs[:40]}
    assert kinds == {"cap", "vqa"} and len({r["id"] for r in recs}) == len(recs)
    lines = [json.loads(x) for x in (root / "pretrain/val_questions.jsonl").read_text().splitlines()]
    fams = {x["category"] for x in lines}
    assert {"color", "shape", "count_all", "exist_shape"} <= fams
    ann = _json(root / "pretrain/val_annotations.json")["annotations"]
    assert {a["question_id"] for a in ann} == {x["question_id"] for x in lines}


def test_eval_files_and_held_out_images(built):
    root, _ = built
    train_imgs = {r["image"] for r in _json(root / "vqav2/llava_train.json")}
    val_imgs = {json.loads(x)["image"] for x in (root / "vqav2/val_questions.jsonl").read_text().splitlines()}
    assert val_imgs and not val_imgs & train_imgs
    assert not (root / "vqav2/test-dev_annotations.json").exists()
    g_train = {r["image"] for r in _json(root / "gqa/llava_train.json")}
    g_test = {json.loads(x)["image"] for x in (root / "gqa/testdev_questions.jsonl").read_text().splitlines()}
    assert g_test and not g_test & g_train
    refs = _json(root / "coco/test_annotations.json")
    assert len(refs["annotations"]) == 16 * 5


def test_cached_rerun_returns_at_once_and_changes_rebuild(built, tmp_path):
    root, stamp = built
    before = (root / bd.STAMP).stat().st_mtime_ns
    again = bd.build_default(root, "smoke", seed=0)
    assert again["cached"] and again["hash"] == stamp["hash"]
    assert (root / bd.STAMP).stat().st_mtime_ns == before
    other = tmp_path / "other"
    s1 = bd.build_default(other, "smoke", seed=1)
    assert s1["hash"] != stamp["hash"] and not s1["cached"]
    (other / bd.STAMP).write_text("{broken")
    assert not bd.build_default(other, "smoke", seed=1)["cached"]  # corrupt stamp -> rebuild


def test_interrupted_build_keeps_previous_data(tmp_path, monkeypatch):
    root = tmp_path / "d"
    first = bd.build_default(root, "smoke", seed=0)

    def boom(_d):
        raise KeyboardInterrupt("killed mid-build")

    monkeypatch.setattr(bd, "convert_all", boom)
    with pytest.raises(KeyboardInterrupt):
        bd.build_default(root, "smoke", seed=2)
    assert _json(root / bd.STAMP)["hash"] == first["hash"]
    assert (root / "coco/llava_train.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".d.lock", "d"]  # no temp dirs left


def test_cli(tmp_path, capsys):
    assert bd.main(["--root", str(tmp_path / "c"), "--preset", "smoke"]) == 0
    assert bd.main(["--root", str(tmp_path / "c"), "--preset", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "built in" in out and "cached" in out
