"""Batched greedy decoding with KV cache, left padding and length-sorted batches; crash-safe
answer files.

Why each piece:
- left padding (data.collate_for_generation) puts every prompt's last token at the same
  position, so one `generate` call decodes the whole batch; greedy + attention mask gives the
  same answers as a batch-1 loop (tested);
- sorting by prompt length before batching keeps padding (wasted compute) minimal;
- each batch's answers are appended to a JSONL file and fsync'ed, so a killed run loses at most
  the batch in flight; a torn last line is cut off before appending (`repair_jsonl`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llava_structlora.data import collate_for_generation, encode_prompt, image_size_of, is_anyres, preprocess_images
from llava_structlora.data.dataset import IMAGE_ERRORS
from llava_structlora.data.encoding import open_rgb


class ImageLoadError(OSError):
    """An evaluation image that cannot be decoded; the message names the file."""


class QuestionFileError(ValueError):
    """A malformed LLaVA question JSONL; the message names the file and line."""


@dataclass(frozen=True)
class Question:
    """One LLaVA eval question line (`question_id`, `image`, `text`)."""

    qid: Any
    text: str
    image: Path | None


def load_questions(path: str | Path, image_folder: str | Path) -> list[Question]:
    """Read `<split>_questions.jsonl`; duplicated ids or missing fields are errors."""
    path, image_folder = Path(path), Path(image_folder)
    if not path.is_file():
        raise QuestionFileError(f"question file not found: {path}")
    out, seen = [], set()
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise QuestionFileError(f"{path}:{n}: not valid UTF-8 ({e})") from e
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise QuestionFileError(f"{path}:{n}: not valid JSON ({e})") from e
            if not isinstance(rec, dict) or "question_id" not in rec or not isinstance(rec.get("text"), str):
                raise QuestionFileError(f"{path}:{n}: needs 'question_id' and a string 'text'")
            if isinstance(rec["question_id"], (bool, float)) or not isinstance(rec["question_id"], (str, int)):
                raise QuestionFileError(
                    f"{path}:{n}: question_id must be a string or an integer, got {rec['question_id']!r}"
                )
            if rec.get("image") is not None and not isinstance(rec["image"], str):
                raise QuestionFileError(
                    f"{path}:{n} (question_id={rec['question_id']!r}): 'image' must be a path string, "
                    f"got {type(rec['image']).__name__} {str(rec['image'])[:80]}"
                )
            if rec["question_id"] in seen:
                raise QuestionFileError(f"{path}:{n}: duplicate question_id {rec['question_id']!r}")
            seen.add(rec["question_id"])
            image = image_folder / rec["image"] if rec.get("image") else None
            out.append(Question(rec["question_id"], rec["text"], image))
    if not out:
        raise QuestionFileError(f"{path}: no questions")
    return out


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first, ties in input order)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def answer_id(model_id: str, qid: Any, text: str) -> str:
    """Deterministic (LLaVA uses a random shortuuid): a resumed run equals an uninterrupted one."""
    return hashlib.sha1(f"{model_id}\x00{qid}\x00{text}".encode()).hexdigest()[:22]


def answer_record(q: Question, text: str, model_id: str, metadata: dict) -> dict:
    """One line of LLaVA's answers JSONL."""
    return {
        "question_id": q.qid,
        "prompt": q.text,
        "text": text,
        "answer_id": answer_id(model_id, q.qid, text),
        "model_id": model_id,
        "metadata": metadata,
    }


def load_images(paths: Sequence[Path], processor) -> list[torch.Tensor]:
    """`data.load_image` for a batch: each distinct file decoded once, one preprocessing call
    (per-image processor calls cost as much as the tiny model's forward)."""
    unique = list(dict.fromkeys(paths))
    imgs = []
    for path in unique:
        try:
            imgs.append(open_rgb(str(path)))  # PIL's bomb guard included
        except IMAGE_ERRORS as e:  # every id must be answered: no skipping here
            raise ImageLoadError(f"cannot read image {path}: {e}") from e
    pixels, _ = preprocess_images(imgs, processor)
    index = {p: i for i, p in enumerate(unique)}
    return [pixels[index[p]] for p in paths]


def batch_pixels(questions: Sequence[Question], processor) -> list[torch.Tensor | None]:
    """Pixel values per question (None for text-only questions)."""
    with_img = [q.image for q in questions if q.image is not None]
    pixels = iter(load_images(with_img, processor) if with_img else [])
    return [next(pixels) if q.image is not None else None for q in questions]


def question_image_size(q: Question, processor) -> tuple[int, int] | None:
    """(height, width) of a question's image when the processor's token count needs it (NeXT)."""
    if q.image is None or not is_anyres(processor):
        return None
    try:
        return image_size_of(str(q.image))
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageLoadError(f"cannot read image {q.image}: {e}") from e


@torch.inference_mode()
def generate_batch(
    model,
    processor,
    questions: Sequence[Question],
    input_ids: Sequence[list[int]],
    max_new_tokens: int,
    pixels: Sequence[torch.Tensor | None] | None = None,
) -> list[str]:
    """Greedy answers for one batch (left-padded, KV cache)."""
    tok = processor.tokenizer
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    pixels = batch_pixels(questions, processor) if pixels is None else pixels
    items = [
        {"input_ids": ids, "id": q.qid, "pixel_values": px, "image_sizes": question_image_size(q, processor)}
        for q, ids, px in zip(questions, input_ids, pixels)
    ]
    batch = collate_for_generation(items, tok.pad_token_id)
    kwargs = {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device)}
    if "pixel_values" in batch:
        kwargs["pixel_values"] = batch["pixel_values"].to(device, dtype)
    if "image_sizes" in batch:
        kwargs["image_sizes"] = batch["image_sizes"].to(device)
    out = model.generate(
        **kwargs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        use_cache=True,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    new_tokens = out[:, kwargs["input_ids"].shape[1] :]
    return [t.strip() for t in tok.batch_decode(new_tokens, skip_special_tokens=True)]


def repair_jsonl(path: Path) -> None:
    """Cut a torn last line (a kill -9 mid-write) so that appended lines stay parseable."""
    if not path.exists():
        return
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep != len(data):
        with open(path, "r+b") as f:
            f.truncate(keep)


def read_jsonl(path: Path) -> list[dict]:
    """Complete lines of an answers file (a torn last line is ignored)."""
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n"):
                break
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise QuestionFileError(f"{path}:{n}: corrupt answer line ({e}); delete the file to regenerate") from e
    return out


def append_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Append whole lines and fsync: the batch is either on disk or regenerated on resume."""
    data = "".join(json.dumps(r) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def generate_to_file(
    model,
    processor,
    questions: Sequence[Question],
    out_path: Path,
    batch_size: int,
    max_new_tokens: int,
    model_id: str,
    metadata: dict | None = None,
    system: str = "",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Answer `questions` not yet in `out_path`, appending one batch at a time; returns #new answers.

    The next batch's images are decoded in a background thread while the model generates.
    `system` is the conversation's system prompt; it must be the one used in training.
    """
    out_path.parent.mkdir(parents=True, exist_ok=True)
    repair_jsonl(out_path)
    done = {r["question_id"] for r in read_jsonl(out_path)}
    todo = [q for q in questions if q.qid not in done]
    ids = [
        encode_prompt(
            q.text,
            processor,
            system=system,
            with_image=q.image is not None,
            image_size=question_image_size(q, processor),
        )
        for q in todo
    ]
    batches = [[todo[i] for i in b] for b in length_sorted_batches([len(i) for i in ids], batch_size)]
    index = {q.qid: i for i, q in enumerate(todo)}
    n = 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(batch_pixels, batches[0], processor) if batches else None
        for k, qs in enumerate(batches):
            pixels = pending.result()
            if k + 1 < len(batches):
                pending = pool.submit(batch_pixels, batches[k + 1], processor)
            texts = generate_batch(model, processor, qs, [ids[index[q.qid]] for q in qs], max_new_tokens, pixels)
            append_jsonl(out_path, [answer_record(q, t, model_id, metadata or {}) for q, t in zip(qs, texts)])
            n += len(qs)
            if progress is not None:
                progress(len(qs))
    return n
