"""The metrics CLI prints exactly one JSON object; bad input exits non-zero with a clear message."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run(
        [sys.executable, "-m", "llava_structlora.metrics", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


def _vqa_files(tmp_path, results):
    q = {"questions": [{"question_id": 5, "image_id": 1, "question": "how many?"}]}
    a = {
        "annotations": [
            {
                "question_id": 5,
                "image_id": 1,
                "answer_type": "number",
                "question_type": "how many",
                "multiple_choice_answer": "2",
                "answers": [
                    {"answer": x, "answer_confidence": "yes", "answer_id": i + 1}
                    for i, x in enumerate(["2"] * 3 + ["3"] * 7)
                ],
            }
        ]
    }
    paths = [tmp_path / n for n in ("q.json", "a.json", "r.json")]
    for p, o in zip(paths, (q, a, results)):
        p.write_text(json.dumps(o))
    return paths


def test_vqav2_cli_prints_one_json_object(tmp_path):
    q, a, r = _vqa_files(tmp_path, [{"question_id": 5, "answer": "two"}])
    proc = _run("vqav2", "--questions", q, "--annotations", a, "--results", r, "--protocol", "official")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # the whole stdout is a single JSON object
    # "two" -> "2" (answers disagree): 3 x "2" -> (3 * 2/3 + 7 * 1) / 10 = 0.9
    assert out["overall"] == 90.0 and out["per_answer_type"] == {"number": 90.0} and out["n"] == 1


def test_vqav2_cli_unknown_id_is_an_error(tmp_path):
    q, a, r = _vqa_files(tmp_path, [{"question_id": 5, "answer": "2"}, {"question_id": 6, "answer": "2"}])
    proc = _run("vqav2", "--questions", q, "--annotations", a, "--results", r)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "r.json" in proc.stderr and "not in the references (e.g. 6)" in proc.stderr
    proc = _run("vqav2", "--questions", q, "--annotations", a, "--results", r, "--allow-partial")
    out = json.loads(proc.stdout)
    assert out["n"] == 1 and out["n_unknown"] == 1 and out["overall"] == 90.0


def test_caption_cli_runs_meteor(tmp_path):
    a, r = tmp_path / "a.json", tmp_path / "r.json"
    a.write_text(
        json.dumps(
            {
                "images": [{"id": 1}, {"id": 2}],
                "annotations": [
                    {"image_id": 1, "id": 1, "caption": "a red circle"},
                    {"image_id": 1, "id": 2, "caption": "red circle"},
                    {"image_id": 2, "id": 3, "caption": "a blue square"},
                    {"image_id": 2, "id": 4, "caption": "one blue square"},
                ],
            }
        )
    )
    r.write_text(json.dumps([{"image_id": 1, "caption": "a red circle"}, {"image_id": 2, "caption": "a green square"}]))
    proc = _run("caption", "--annotations", a, "--results", r)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) >= {"CIDEr", "Bleu_4", "ROUGE_L", "METEOR", "n"} and out["n"] == 2
    assert out["METEOR"] is not None and 0 < out["METEOR"] < 1, out.get("notes")
