"""python -m llava_structlora.chat on the toy base: the evaluator's prompt encoding and batched generation,
single questions, several questions as one batch, the interactive loop, and clear errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from llava_structlora import chat
from llava_structlora.evaluation.generate import generate_to_file, load_questions
from llava_structlora.evaluation.load import load_model

REPO = Path(__file__).resolve().parents[2]
MAX_NEW = 24  # tokens per answer: enough for answers that differ, few enough to stay fast
QUESTIONS = ["What color is the circle?", "How many shapes are there?", "Describe the image."]


@pytest.fixture(scope="module")
def images(tmp_path_factory, smoke) -> list[Path]:
    """Two shapes-world images, one saved as a non-square, larger file (the processor pads and resizes it)."""
    folder = tmp_path_factory.mktemp("chat")
    src = sorted((smoke["data"] / "raw").rglob("*.jpg"))[:2]
    wide = Image.open(src[1]).convert("RGB").resize((120, 80))
    wide.save(folder / "wide.jpg")
    return [src[0], folder / "wide.jpg"]


def evaluator_answers(model_dir: Path, image: Path, tmp: Path, batch_size: int = 1) -> list[str]:
    """What evaluation (generate_to_file) answers to QUESTIONS about `image`."""
    qfile = tmp / "q.jsonl"
    qfile.write_text("".join(json.dumps({"question_id": i, "image": image.name, "text": q}) + "\n" for i, q in
                             enumerate(QUESTIONS)))  # fmt: skip
    model, processor = load_model(model_dir)
    answers = tmp / f"a{batch_size}.jsonl"
    answers.unlink(missing_ok=True)
    generate_to_file(model, processor, load_questions(qfile, image.parent), answers, batch_size, MAX_NEW, "m")
    rows = sorted((json.loads(line) for line in answers.read_text().splitlines()), key=lambda r: r["question_id"])
    return [r["text"] for r in rows]


def test_answers_equal_the_evaluators_single_and_batched(smoke, images, tmp_path, capsys):
    model = smoke["random"]  # varied, non-empty answers (the smoke base answers everything alike)
    for image in images:
        expected = evaluator_answers(model, image, tmp_path)
        assert len(set(expected)) > 1 and all(expected)
        common = ["--model", str(model), "--image", str(image), "--max_new_tokens", str(MAX_NEW)]
        assert chat.main([*common, "--question", QUESTIONS[0]]) == 0
        assert capsys.readouterr().out == expected[0] + "\n"
        argv = common + [a for q in QUESTIONS for a in ("--question", q)]
        assert chat.main(argv) == 0  # one left-padded batch of three, as evaluation batches them
        batched = evaluator_answers(model, image, tmp_path, batch_size=3)
        assert capsys.readouterr().out == "".join(f"Q: {q}\nA: {a}\n" for q, a in zip(QUESTIONS, batched))


def test_interactive_loop_switches_images_and_survives_a_bad_path(smoke, images, tmp_path):
    model, processor = load_model(smoke["random"])
    c = chat.Chat(model, processor, "vicuna_v1_nosys", MAX_NEW)
    c.set_image(images[0])
    out = io.StringIO()
    lines = [QUESTIONS[0], "/image /no/such.jpg", f"/image {images[1]}", QUESTIONS[0], "/quit", "never asked"]
    assert chat.interactive(c, iter(line + "\n" for line in lines), out) == 2
    text = out.getvalue()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = evaluator_answers(smoke["random"], images[0], tmp_path / "a")
    second = evaluator_answers(smoke["random"], images[1], tmp_path / "b")
    assert f"> {first[0]}\n" in text and f"> {second[0]}\n" in text
    assert "image /no/such.jpg not found" in text and "never asked" not in text


def test_cli_errors_are_one_line_exit_2(smoke, images, tmp_path, capsys):
    missing = tmp_path / "missing.jpg"
    assert chat.main(["--model", str(smoke["base"]), "--image", str(missing), "--question", "hi"]) == 2
    assert f"[chat] error: image {missing} not found" in capsys.readouterr().err
    assert chat.main(["--image", str(images[0]), "--question", "hi"]) == 2
    assert "--model BASE is needed" in capsys.readouterr().err
    res = subprocess.run(  # the documented command line, in a fresh process
        [sys.executable, "-m", "llava_structlora.chat", "--model", str(smoke["base"]), "--image", str(images[1]),
         "--question", "What shape?", "--max_new_tokens", "8"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0 and len(res.stdout.splitlines()) == 1, res.stderr[-2000:]
