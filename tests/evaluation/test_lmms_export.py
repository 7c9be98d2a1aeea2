"""The lmms-eval exporter: task YAMLs that name lmms-eval's own functions, data with embedded images,
prompts equal to ours. Runs without lmms-eval; the check against an installed lmms-eval skips
(with the reason) when LMMS_PYTHON does not point to one."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, list[dict]]:
    from data_prep.build_default import build_default
    from llava_structlora.evaluation.lmms_export import export_all

    data = REPO / "artifacts" / "data" / "smoke"
    build_default(data, "smoke")
    out = tmp_path_factory.mktemp("lmms")
    return data, out, export_all(data, out, limit=7)


def _load_yaml(path: Path) -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: ("function", loader.construct_scalar(node)))
    return yaml.load(path.read_text(), Loader=Loader)


def test_yaml_uses_lmms_eval_functions_and_our_generation_length(exported):
    from llava_structlora.evaluation.config import TASKS
    from llava_structlora.evaluation.lmms_export import LMMS_TASKS

    _, out, infos = exported
    assert [i["ours"] for i in infos] == ["vqav2", "gqa", "coco"]
    for info in infos:
        task = LMMS_TASKS[info["ours"]]
        cfg = _load_yaml(out / info["task"] / f"{info['task']}.yaml")
        assert cfg["task"] == info["task"] and cfg["dataset_kwargs"] == {"load_from_disk": True}
        assert Path(cfg["dataset_path"]).is_dir()
        assert cfg["generation_kwargs"]["max_new_tokens"] == TASKS[info["ours"]].max_new_tokens
        assert cfg["doc_to_visual"] == ("function", f"utils.{task.visual}")
        assert cfg["doc_to_text"] == ("function", f"utils.{task.text}")  # the shapes world uses the stock prompts
        utils = (out / info["task"] / "utils.py").read_text()
        assert f"from {task.module} import {task.visual}, {task.text}" in utils
        assert "def " not in utils  # nothing of ours: only lmms-eval's functions
        if task.process_results:
            assert cfg["process_results"] == ("function", f"utils.{task.process_results}")
    coco = _load_yaml(out / infos[2]["task"] / f"{infos[2]['task']}.yaml")
    assert [m["metric"] for m in coco["metric_list"]][-1] == "coco_CIDEr"
    gqa = _load_yaml(out / infos[1]["task"] / f"{infos[1]['task']}.yaml")
    assert gqa["metric_list"][0] == {
        "metric": "exact_match",
        "aggregation": "mean",
        "higher_is_better": True,
        "ignore_case": True,
        "ignore_punctuation": True,
    }


def test_data_embeds_images_and_rebuilds_our_prompts(exported):
    import datasets

    from llava_structlora.data import resolve_image_folder
    from llava_structlora.evaluation.config import TASKS
    from llava_structlora.evaluation.generate import load_questions

    data, out, infos = exported
    for info in infos:
        cfg = _load_yaml(out / info["task"] / f"{info['task']}.yaml")
        ds = datasets.load_from_disk(cfg["dataset_path"])[cfg["test_split"]]
        qfile = TASKS[info["ours"]].questions_jsonl(data, info["split"])
        questions = load_questions(qfile, resolve_image_folder(qfile))[:7]
        assert len(ds) == info["n"] == 7
        post = cfg.get("lmms_eval_specific_kwargs", {}).get("default", {}).get("post_prompt")
        assert (post is None) == (info["ours"] == "coco")  # coco_doc_to_text(doc) takes no kwargs
        raw = ds.cast_column("image", datasets.Image(decode=False))
        for q, doc, rawdoc in zip(questions, ds, raw):
            text = (
                "Provide a one-sentence caption for the provided image."
                if info["ours"] == "coco"
                else doc["question"] + post
            )  # what lmms-eval's doc_to_text returns
            assert text == q.text
            assert rawdoc["image"]["bytes"] == q.image.read_bytes()  # the very file our evaluator reads
        if info["ours"] == "vqav2":
            assert all(len(d["answers"]) == 10 and {"answer", "answer_id"} <= set(d["answers"][0]) for d in ds)
        if info["ours"] == "coco":  # coco_process_result parses the image id out of question_id
            assert [int(d["question_id"].split("_")[-1].split(".")[0]) for d in ds] == [d["id"] for d in ds]
            assert all(len(d["answer"]) >= 1 for d in ds)


def test_bad_split_is_a_clear_error(exported, tmp_path):
    from llava_structlora.evaluation.lmms_export import main

    data, _, _ = exported
    assert main(["--data_root", str(tmp_path), "--out", str(tmp_path / "o"), "--tasks", "gqa"]) == 2
    assert not (tmp_path / "o" / "structlora_gqa_testdev").exists()


def test_functions_exist_in_installed_lmms_eval(exported):
    python = os.environ.get("LMMS_PYTHON")
    if not python:
        pytest.skip(
            "lmms-eval is not part of the project venv: set LMMS_PYTHON to a python that has it "
            "(requirements-lmms-eval.txt) to check the exported names against it"
        )
    _, out, infos = exported
    for info in infos:
        utils = out / info["task"] / "utils.py"
        res = subprocess.run(
            [python, "-c", f"import runpy; runpy.run_path({str(utils)!r})"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd="/tmp",
        )
        assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((out / "tasks.json").read_text()) == infos
