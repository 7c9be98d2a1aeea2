"""eval/lmms_eval.sh's entry point: clear errors before lmms-eval is touched, and its results-file check."""

from __future__ import annotations

import os
import time

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
