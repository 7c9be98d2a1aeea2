"""Shapes world: determinism, official formats, answers true to the image, held-out splits,
vocabulary coverage and balanced answer priors."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from data_prep.shapes_scene import RGB, Obj, Scene, position, render
from data_prep.shapes_stats import coverage, vqa_accuracy, world_stats
from data_prep.shapes_text import AnswerNoise, _norm, human_answers
from data_prep.shapes_world import PRESETS, ShapesPreset, generate, main
from data_prep.shapes_writer import write_world

SMOKE = PRESETS["smoke"]


def _load(p: Path):
    return json.loads(p.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sw") / "data"
    write_world(generate(SMOKE, 0), SMOKE, 0, root)
    return root / "raw"


def test_same_seed_is_byte_identical_and_other_seed_differs(world, tmp_path):
    again = write_world(generate(SMOKE, 0), SMOKE, 0, tmp_path / "again")
    files = sorted(p.relative_to(world) for p in world.rglob("*") if p.is_file())
    assert len(files) > 250
    for rel in files:
        assert (world / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = write_world(generate(SMOKE, 1), SMOKE, 1, tmp_path / "other")
    rel = Path("coco/annotations/captions_train2014.json")
    assert (other / rel).read_bytes() != (world / rel).read_bytes()


def test_coco_and_karpathy_official_shape(world):
    cap = _load(world / "coco/annotations/captions_train2014.json")
    assert set(cap) == {"info", "images", "annotations", "licenses"}
    img = cap["images"][0]
    assert {"id", "file_name", "height", "width"} <= set(img) and img["height"] == SMOKE.image_size
    assert (world / "images/train2014" / img["file_name"]).is_file()
    per_image = Counter(a["image_id"] for a in cap["annotations"])
    assert set(per_image.values()) == {SMOKE.captions_per_image}
    assert len({a["id"] for a in cap["annotations"]}) == len(cap["annotations"])
    kp = _load(world / "coco/dataset_coco.json")
    splits = Counter(i["split"] for i in kp["images"])
    assert splits == {"train": SMOKE.train, "restval": SMOKE.restval, "val": SMOKE.val, "test": SMOKE.test}
    im = kp["images"][0]
    assert {"filepath", "filename", "imgid", "split", "sentences", "cocoid", "sentids"} <= set(im)
    s = im["sentences"][0]
    assert s["tokens"] == s["raw"].split() and s["imgid"] == im["imgid"]
    sentids = [s["sentid"] for i in kp["images"] for s in i["sentences"]]
    assert sentids == list(range(len(sentids)))


def test_vqav2_official_shape_and_human_disagreement(world):
    q = _load(world / "vqav2/v2_OpenEnded_mscoco_train2014_questions.json")
    assert q["task_type"] == "Open-Ended" and q["data_type"] == "mscoco" and q["data_subtype"] == "train2014"
    assert {"info", "license", "questions"} <= set(q)
    a = _load(world / "vqav2/v2_mscoco_train2014_annotations.json")
    assert [x["question_id"] for x in a["annotations"]] == [x["question_id"] for x in q["questions"]]
    raw = []
    for ann in a["annotations"]:
        assert ann["answer_type"] in ("yes/no", "number", "other") and ann["question_type"]
        assert [x["answer_id"] for x in ann["answers"]] == list(range(1, 11))
        answers = [x["answer"] for x in ann["answers"]]
        votes = Counter(_norm(x) for x in answers)
        assert votes[_norm(ann["multiple_choice_answer"])] == max(votes.values())  # majority answer
        assert vqa_accuracy(ann["multiple_choice_answer"], answers) > 0
        raw.append(answers)
    disagree = sum(len(set(x)) > 1 for x in raw) / len(raw)
    assert 0.5 < disagree < 0.95
    flat = [x for ans in raw for x in ans]
    assert any(x in ("two", "one", "three") for x in flat)  # "2" vs "two"
    assert any(x.startswith(("a ", "the ")) for x in flat)  # articles
    assert not (world / "vqav2/v2_mscoco_test-dev2015_annotations.json").exists()
    td = _load(world / "vqav2/v2_OpenEnded_mscoco_test-dev2015_questions.json")
    assert td["data_subtype"] == "test-dev2015"
    assert (world / "images/test2015" / f"COCO_test2015_{td['questions'][0]['image_id']:012d}.jpg").is_file()


def test_human_answers_keep_canonical_majority():
    rng = random.Random(0)
    noisy = AnswerNoise(cosmetic=0.2, synonym=0.2, typo=0.1, wrong=0.2)
    for ans, t, space in [
        ("yes", "yes/no", ("yes", "no")),
        ("2", "number", ("0", "1", "2")),
        ("top left", "other", ("top left", "center")),
    ]:
        for _ in range(50):
            answers, mc = human_answers(rng, ans, t, space, noisy)
            assert mc == ans and len(answers) == 10


def test_gqa_official_shape_and_images(world):
    g = _load(world / "gqa/train_balanced_questions.json")
    qid, rec = next(iter(g.items()))
    assert isinstance(qid, str)
    assert {
        "imageId",
        "question",
        "answer",
        "fullAnswer",
        "types",
        "isBalanced",
        "groups",
        "annotations",
        "semantic",
        "equivalent",
        "entailed",
        "semanticStr",
    } <= set(rec)
    assert set(rec["types"]) == {"structural", "semantic", "detailed"}
    assert {"operation", "dependencies", "argument"} == set(rec["semantic"][0])
    structural = Counter(r["types"]["structural"] for r in g.values())
    assert {"query", "verify", "choose", "logical", "compare"} <= set(structural)
    for r in g.values():
        assert (world / "gqa/images" / f"{r['imageId']}.jpg").is_file() and r["answer"] and r["fullAnswer"]


def _ids(world: Path) -> dict[str, set]:
    cap_tr = {i["id"] for i in _load(world / "coco/annotations/captions_train2014.json")["images"]}
    kp = _load(world / "coco/dataset_coco.json")["images"]
    vq = {
        s: {q["image_id"] for q in _load(world / f"vqav2/v2_OpenEnded_mscoco_{s}_questions.json")["questions"]}
        for s in ("train2014", "val2014", "test-dev2015")
    }
    gq = {
        s: {r["imageId"] for r in _load(world / f"gqa/{s}_balanced_questions.json").values()}
        for s in ("train", "val", "testdev")
    }
    pre = {i["id"] for s in ("train2014", "val2014") for i in _load(world / f"pretrain/captions_{s}.json")["images"]}
    return {
        "cap_tr": cap_tr,
        "kp_train": {i["cocoid"] for i in kp if i["split"] in ("train", "restval")},
        "kp_eval": {i["cocoid"] for i in kp if i["split"] in ("val", "test")},
        **vq,
        **{f"gqa_{k}": v for k, v in gq.items()},
        "pre": pre,
    }


def test_held_out_splits_never_overlap_training_images(world):
    ids = _ids(world)
    train = ids["kp_train"] | ids["train2014"] | {int(x) for x in ids["gqa_train"]} | ids["pre"]
    for held in ("kp_eval", "val2014", "test-dev2015"):
        assert ids[held] and not ids[held] & train, held
    for held in ("gqa_val", "gqa_testdev"):
        assert ids[held] and not {int(x) for x in ids[held]} & train, held
    assert not ids["gqa_val"] & ids["gqa_testdev"]
    assert ids["cap_tr"] == ids["train2014"]


def _oracle(q: str, objs: list[dict], grid: int) -> str | None:
    """Independent re-derivation of a few families' answers from the scene."""
    if q == "how many shapes are there?":
        return str(len(objs))
    if m := re.fullmatch(r"what color is the (circle|square|triangle|cross)\?", q):
        return next(o["color"] for o in objs if o["shape"] == m[1])
    if m := re.fullmatch(r"is there a (\w+)\?", q):
        return "yes" if any(o["shape"] == m[1] for o in objs) else "no"
    if m := re.fullmatch(r"is there a (\w+) (\w+)\?", q):
        return "yes" if any(o["color"] == m[1] and m[2] in ("shape", o["shape"]) for o in objs) else "no"
    if m := re.fullmatch(r"where is the (?:(\w+) )?(\w+)\?", q):
        o = next(o for o in objs if o["shape"] == m[2] and m[1] in (None, o["color"]))
        return position(Obj(**o), grid)
    return None


def test_answers_are_true_to_the_scene(world):
    meta = _load(world / "shapes_meta.json")
    checked = 0
    for qf, af in [
        ("pretrain/v2_OpenEnded_mscoco_train2014_questions.json", "pretrain/v2_mscoco_train2014_annotations.json"),
        ("vqav2/v2_OpenEnded_mscoco_train2014_questions.json", "vqav2/v2_mscoco_train2014_annotations.json"),
    ]:
        answers = {a["question_id"]: a["multiple_choice_answer"] for a in _load(world / af)["annotations"]}
        for q in _load(world / qf)["questions"]:
            want = _oracle(q["question"], meta["scenes"][str(q["image_id"])]["objects"], SMOKE.grid)
            if want is not None:
                assert answers[q["question_id"]] == want, q
                checked += 1
    assert checked > 100


def test_render_draws_each_object_in_its_cell():
    objs = tuple(
        Obj(s, c, z, r, col)
        for s, c, z, r, col in [
            ("circle", "red", "small", 0, 0),
            ("cross", "blue", "large", 1, 1),
            ("triangle", "yellow", "small", 2, 2),
            ("square", "purple", "large", 0, 2),
        ]
    )
    img = render(Scene(objs, 3), 64, random.Random(0))
    assert img.size == (64, 64)
    cell = 64 / 3
    for o in objs:
        px = img.getpixel((int((o.col + 0.5) * cell), int((o.row + 0.5) * cell)))
        assert max(abs(a - b) for a, b in zip(px, RGB[o.color])) < 60, (o, px)
    assert img.getpixel((int(cell * 0.5), int(cell * 1.5))) == (0, 0, 0)  # empty cell


def test_vocabulary_coverage_and_balance_on_default_sizes():
    items = generate(PRESETS["default"], 0)
    assert coverage(items)["uncovered_words"] == []
    assert coverage(generate(SMOKE, 0))["uncovered_words"] == []
    st = world_stats(items)
    assert abs(st["sizes"]["pretrain_train"]["one_object_share"] - 0.25) < 0.03
    for name, rows in st["chance"].items():
        for key, r in rows.items():
            if key.startswith("family/") and r["uniform"] == 0.5 and r["n"] > 100 and name != "gqa":
                assert r["prior_exact"] < 0.62, (name, key, r)  # yes/no families stay balanced
    yn = Counter(v.mc_answer for it in items["pretrain_train"] for v in it.vqa if v.qa.answer_type == "yes/no")
    assert 0.45 < yn["yes"] / (yn["yes"] + yn["no"]) < 0.55


def test_preset_validation_and_stats_cli(capsys):
    with pytest.raises(ValueError, match="max_objects"):
        replace(SMOKE, max_objects=12)
    with pytest.raises(ValueError, match="train"):
        ShapesPreset(name="x", train=-1)
    assert main(["--preset", "smoke", "--stats"]) == 0
    out = capsys.readouterr().out
    assert "[vqav2] chance levels" in out and "family/rel_verify" in out and "not covered" in out
