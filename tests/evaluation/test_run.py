"""End to end: evaluate() writes answers once per id in question order, scores with the metrics
CLI's code, writes submissions for test-dev, refuses to mix runs, and shards across processes."""

import json

import pytest

from llava_structlora.evaluation import EvalConfig, evaluate
from llava_structlora.metrics import score_vqav2


def _cfg(smoke, out, **kw):
    args = dict(
        task="vqav2",
        model=str(smoke["random"]),
        data_root=str(smoke["data"]),
        output_dir=str(out),
        batch_size=32,
        max_new_tokens=6,
        device="cpu",
    )
    args.update(kw)
    return EvalConfig(**args)


def _qids(path):
    return [json.loads(line)["question_id"] for line in open(path)]


def test_vqav2_val_scores_and_writes_metrics(smoke, tmp_path):
    metrics = evaluate(_cfg(smoke, tmp_path))
    qfile = smoke["data"] / "vqav2" / "val_questions.jsonl"
    assert _qids(tmp_path / "answers.jsonl") == _qids(qfile)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    ref = score_vqav2(
        smoke["data"] / "vqav2" / "val_questions.json",
        smoke["data"] / "vqav2" / "val_annotations.json",
        tmp_path / "results.json",
    )
    assert metrics["overall"] == ref["overall"] and metrics["n"] == len(_qids(qfile))
    assert set(metrics["per_answer_type"]) <= {"yes/no", "number", "other"}
    again = evaluate(_cfg(smoke, tmp_path))  # resume: nothing left to generate
    assert again["n_generated_this_run"] == 0 and again["overall"] == metrics["overall"]
    with pytest.raises(ValueError, match="holds answers of another run"):
        evaluate(_cfg(smoke, tmp_path, max_new_tokens=7))


def test_test_dev_writes_submission(smoke, tmp_path):
    metrics = evaluate(_cfg(smoke, tmp_path, split="test-dev", protocol="llava"))
    sub = json.loads((tmp_path / "submission.json").read_text())
    test_dev = _qids(smoke["data"] / "vqav2" / "test-dev_questions.jsonl")
    assert [r["question_id"] for r in sub][: len(test_dev)] == test_dev
    assert "overall" not in metrics and metrics["submission"].endswith("submission.json")
    assert all(isinstance(r["answer"], str) for r in sub)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["gqa", "coco"])
def test_gqa_and_coco(smoke, tmp_path, task):
    metrics = evaluate(_cfg(smoke, tmp_path, task=task, meteor=False))  # METEOR: tests/metrics/test_cli.py
    key = "accuracy" if task == "gqa" else "CIDEr"
    assert key in metrics and metrics["n"] == metrics["n_questions"] > 0
    if task == "coco":
        assert metrics["METEOR"] is None and any("CLIPScore skipped" in n for n in metrics["notes"])


@pytest.mark.slow
def test_two_cpu_workers_equal_one(smoke, tmp_path):
    one = evaluate(_cfg(smoke, tmp_path / "one", task="gqa", batch_size=16))
    two = evaluate(_cfg(smoke, tmp_path / "two", task="gqa", batch_size=16, num_gpus=2))
    assert (tmp_path / "one" / "answers.jsonl").read_text() == (tmp_path / "two" / "answers.jsonl").read_text()
    assert len(list((tmp_path / "two" / "answers").glob("shard-*-of-02.jsonl"))) == 2
    assert one["accuracy"] == two["accuracy"]


def test_rebuilt_question_file_is_not_resumed(smoke, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(smoke["data"] / "vqav2", data / "vqav2")
    shutil.copytree(smoke["data"] / "raw", data / "raw")
    evaluate(_cfg(smoke, tmp_path / "out", data_root=str(data)))
    qfile = data / "vqav2" / "val_questions.jsonl"
    lines = qfile.read_text().splitlines()
    qfile.write_text("\n".join(lines[:-1]) + "\n")  # the data was rebuilt
    with pytest.raises(ValueError, match="questions_sha256"):
        evaluate(_cfg(smoke, tmp_path / "out", data_root=str(data)))


def test_conv_template_defaults_to_the_runs_and_changes_the_prompt(smoke, tmp_path):
    """An adapter/run dir's run.json decides the prompt format unless one is given explicitly."""
    from llava_structlora.data import VICUNA_SYSTEM

    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"conv_template": "vicuna_v1"}))
    assert _cfg(smoke, tmp_path / "a", adapter=str(run / "adapter")).conv_template == "vicuna_v1"
    assert _cfg(smoke, tmp_path / "a", adapter=str(run)).system == VICUNA_SYSTEM
    explicit = _cfg(smoke, tmp_path / "a", adapter=str(run), conv_template="vicuna_v1_nosys")
    assert explicit.system == ""
    assert _cfg(smoke, tmp_path / "b").conv_template == "vicuna_v1_nosys"  # nothing recorded: the toy base's
    (run / "run.json").write_text(json.dumps({"conv_template": "chatml"}))
    with pytest.raises(ValueError, match="conv_template='chatml'"):
        _cfg(smoke, tmp_path / "a", adapter=str(run))


def test_limit_scores_first_n_and_resumes(smoke, tmp_path):
    """--limit N: the first N questions in file order, scored on those N; a larger N resumes, a smaller reuses."""
    qfile = smoke["data"] / "vqav2" / "val_questions.jsonl"
    first = evaluate(_cfg(smoke, tmp_path, limit=5))
    assert _qids(tmp_path / "answers.jsonl") == _qids(qfile)[:5]
    assert (first["n"], first["n_questions"], first["limit"]) == (5, 5, 5)
    assert first["n_questions_in_split"] == len(_qids(qfile)) > 5
    assert "n_missing" not in first
    more = evaluate(_cfg(smoke, tmp_path, limit=8))
    assert more["n_generated_this_run"] == 3 and more["n"] == 8
    again = evaluate(_cfg(smoke, tmp_path, limit=5))  # answers beyond the limit stay on disk, not merged
    assert again["n_generated_this_run"] == 0 and again["overall"] == first["overall"]
    with pytest.raises(ValueError, match="limit"):
        _cfg(smoke, tmp_path, limit=0)


def test_both_protocols_side_by_side(smoke, tmp_path):
    """metrics.json carries official and llava scores of the same answers, each equal to the scorer's."""
    from llava_structlora.evaluation.run import summary
    from llava_structlora.metrics import score_gqa

    metrics = evaluate(_cfg(smoke, tmp_path, task="gqa", protocol="llava"))
    refs = smoke["data"] / "gqa" / "testdev_questions.json"
    for proto in ("official", "llava"):
        assert metrics["protocols"][proto]["accuracy"] == score_gqa(refs, tmp_path / "results.json", proto)["accuracy"]
    assert metrics["accuracy"] == metrics["protocols"]["llava"]["accuracy"] and metrics["protocol"] == "llava"
    line = summary(metrics)
    assert line.startswith("GQA testdev (official): accuracy") and "| (llava): accuracy" in line
