"""Per-family diagnosis: official per-question rules, grouping by the world's family map, chance levels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments import families


def _write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    data_root, eval_root = tmp_path / "data", tmp_path / "eval"
    _write(data_root / "raw" / "shapes_meta.json", {"question_family": {"1": "color", "2": "color", "3": "yesno"}})
    stats = {"vqav2": {"family/color": {"prior_vqa_acc": 0.2}, "family/yesno": {"prior_vqa_acc": 0.5}}}
    _write(data_root / "raw" / "stats.json", {"chance": stats})

    def ann(qid: int, answers: list[str]) -> dict:
        return {"question_id": qid, "answers": [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)]}

    anns = [ann(1, ["red"] * 10), ann(2, ["blue"] * 10), ann(3, ["yes"] * 2 + ["no"] * 8)]
    _write(eval_root / "vqav2" / "test_annotations.json", {"annotations": anns})
    return data_root, eval_root


def _results(tmp_path: Path, name: str, answers: dict[int, str]) -> Path:
    return _write(tmp_path / f"{name}.json", [{"question_id": q, "answer": a} for q, a in answers.items()])


def test_family_accuracy_uses_official_vqa_rules(world, tmp_path):
    data_root, eval_root = world
    res = _results(tmp_path, "r", {1: "red", 2: "red", 3: "yes"})
    acc = families.family_accuracy(data_root, eval_root, "vqav2", res)
    assert acc["color"] == pytest.approx(50.0)
    # 2 of 10 annotators said "yes": official accuracy averages min(1, matches/3) over the 10 leave-one-outs
    assert acc["yesno"] == pytest.approx(100 * (2 * (1 / 3) + 8 * (2 / 3)) / 10)


def test_table_flags_families_above_chance(world, tmp_path):
    data_root, eval_root = world
    base = _results(tmp_path, "base", {1: "no", 2: "no", 3: "no"})
    lora = [_results(tmp_path, f"s{s}", {1: "red", 2: "blue", 3: "no"}) for s in range(2)]
    rows = families.table(data_root, eval_root, "vqav2", base, lora)
    assert rows["color"] == {
        "chance": pytest.approx(20.0),
        "base": 0.0,
        "lora_mean": 100.0,
        "lora_std": 0.0,
        "lora_above_chance": True,
    }
    assert rows["yesno"]["lora_above_chance"] is True  # "no" scores 100 against 8 "no" answers: 100 - 50 >= 5
    md = families.markdown("vqav2", rows, 2)
    assert "| color | 20.0 | 0.0 | 100.0 ± 0.0 | +80.0 |" in md
