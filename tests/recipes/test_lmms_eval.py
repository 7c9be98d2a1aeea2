"""eval/lmms_eval.sh's entry point: clear errors before lmms-eval is touched, and its results-file check."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from recipes import lmms_eval


def test_usage_and_missing_model_are_user_errors(tmp_path, capsys):
    assert lmms_eval.main([]) == 2
    assert "usage: bash eval/lmms_eval.sh MERGED_DIR" in capsys.readouterr().err
    assert lmms_eval.main([str(tmp_path)]) == 2
    assert f"{tmp_path.resolve()}/config.json not found" in capsys.readouterr().err


def test_python_without_lmms_eval_is_named(tmp_path, monkeypatch, capsys):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("LMMS_PYTHON", "/usr/bin/false")
    assert lmms_eval.main([str(tmp_path)]) == 2
    assert "/usr/bin/false cannot import lmms_eval" in capsys.readouterr().err


def test_newest_results_ignores_old_files_and_coco_submissions(tmp_path):
    old = tmp_path / "m" / "old_results.json"
    old.parent.mkdir()
    old.write_text("{}")
    os.utime(old, (time.time() - 100, time.time() - 100))
    since = time.time() - 10
    assert lmms_eval.newest_results(tmp_path, since) is None
    sub = tmp_path / "m" / "submissions" / "coco_results.json"
    sub.parent.mkdir()
    sub.write_text("[]")
    assert lmms_eval.newest_results(tmp_path, since) is None
    new = tmp_path / "m" / "x_results.json"
    new.write_text("{}")
    assert lmms_eval.newest_results(tmp_path, since) == new


def test_every_install_hint_is_the_documented_command():
    """docs/evaluation.md, eval/lmms_eval.sh, requirements-lmms-eval.txt and the error give one command."""
    root = Path(__file__).resolve().parents[2]
    flat = lambda text: " ".join(text.replace("#", " ").split())  # noqa: E731 - comments wrap the command
    for name in ("docs/evaluation.md", "eval/lmms_eval.sh", "requirements-lmms-eval.txt"):
        assert lmms_eval.INSTALL in flat((root / name).read_text()), name
    assert "-r requirements.txt -r requirements-lmms-eval.txt" in lmms_eval.INSTALL


def test_missing_lmms_python_error_gives_the_install_command(tmp_path, monkeypatch, capsys):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setenv("LMMS_PYTHON", "/usr/bin/false")
    assert lmms_eval.main([str(tmp_path)]) == 2
    assert lmms_eval.INSTALL in capsys.readouterr().err


def test_a_requested_task_missing_from_the_results_fails(tmp_path, monkeypatch, capsys):
    """lmms-eval exits 0 with a results file that lacks a task it skipped: the wrapper exits 1 naming it."""
    import subprocess as sp

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    out = tmp_path / "out"
    monkeypatch.setenv("OUTPUT_DIR", str(out))
    monkeypatch.setattr(lmms_eval, "lmms_python", lambda: "python")
    infos = [{"task": "structlora_vqav2_val"}, {"task": "structlora_gqa_testdev"}]
    monkeypatch.setattr(lmms_eval, "export_all", lambda *a, **k: infos)

    def fake_lmms(cmd, **kw):  # writes scores for one of the two tasks, exits 0
        res = out / "results" / "m" / "x_results.json"
        res.parent.mkdir(parents=True, exist_ok=True)
        res.write_text(json.dumps({"results": {"structlora_vqav2_val": {"exact_match,none": 0.5}}}))
        return sp.CompletedProcess(cmd, 0)

    monkeypatch.setattr(lmms_eval.subprocess, "run", fake_lmms)
    assert lmms_eval.main([str(tmp_path / "model")]) == 1
    err = capsys.readouterr().err
    assert "no scores for structlora_gqa_testdev" in err and "structlora_vqav2_val," not in err
    infos.pop()
    assert lmms_eval.main([str(tmp_path / "model")]) == 0
    assert "lmms-eval results:" in capsys.readouterr().out


def test_help_lists_the_environment(capsys):
    assert lmms_eval.main(["--help"]) == 0
    assert "LMMS_PYTHON" in capsys.readouterr().out
