"""One evaluation: generate (sharded, resumable) -> merge -> official results -> score -> metrics.json.

Output dir layout:
    eval_key.json            what generated the answers (a rerun with other settings refuses to mix)
    answers/shard-KK-of-NN.jsonl   per-process answers, appended per batch
    answers.jsonl            merged, in question order, each id once (LLaVA format)
    results.json             official results format (scored splits)
    submission.json          official upload file (splits without public answers)
    metrics.json             scores (or the submission path) + run info, written atomically
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from llava_structlora.data import resolve_image_folder
from llava_structlora.utils.io import atomic_write_json, sha256_file
from llava_structlora.utils.outputs import locked_output, read_resume_key, remove_stale

from .config import EvalConfig
from .fingerprint import adapter_fingerprint, model_fingerprint
from .generate import load_questions
from .shards import ShardJob, generate_sharded, merge_answers
from .tasks import TaskSpec

logger = logging.getLogger(__name__)


DERIVED = ("metrics.json", "answers.jsonl", "results.json", "submission.json")  # the stamp first


def answers_key(cfg: EvalConfig, questions_file: Path) -> dict[str, Any]:
    """What the answers depend on: the options that change them, the question file, and the *contents* of the
    adapter and base (fingerprint.py): a run retrained in place gets new answers, never the old ones."""
    return {
        **cfg.generation_key(),
        "questions_sha256": sha256_file(questions_file),
        "adapter_digest": adapter_fingerprint(cfg.adapter),
        "model_digest": model_fingerprint(cfg.model),
    }


def _check_key(cfg: EvalConfig, out: Path, questions_file: Path) -> dict[str, Any]:
    """Refuse to resume answers produced by a different model/adapter/split or question file (or, with
    overwrite, discard them); returns the key."""
    key_path = out / "eval_key.json"
    key = answers_key(cfg, questions_file)
    old = read_resume_key(key_path, cfg.overwrite) if key_path.exists() else key
    if old != key and not cfg.overwrite:
        diff = {k: (old.get(k), v) for k, v in key.items() if old.get(k) != v}
        raise ValueError(
            f"{out} holds answers of another run (old, new): {diff}; use another --output-dir or --overwrite"
        )
    remove_stale(out, DERIVED)  # before any change: the dir looks complete again only once metrics.json is
    if old != key:
        shutil.rmtree(out / "answers", ignore_errors=True)
    atomic_write_json(key_path, key)
    return key


def check_split(spec: TaskSpec, data_root: Path, split: str, option: str = "--split") -> None:
    """FileNotFoundError (a user error) naming the missing question file and the splits that exist."""
    qfile = spec.questions_jsonl(data_root, split)
    if qfile.is_file():
        return
    found = spec.splits(data_root)
    where = f"the splits there: {', '.join(found)}" if found else f"no {spec.name} data there"
    raise FileNotFoundError(
        f"{option} {split}: {qfile} not found ({where}); pick one of them or build the data "
        f"(python -m data_prep.build_default --root {data_root})"
    )


def _image_folder(questions_file: Path) -> Path:
    return resolve_image_folder(questions_file)


def score(cfg: EvalConfig, refs: list[Path], results: Path) -> dict[str, Any]:
    """Scores under ``cfg.protocol`` (the task spec's scorer; VQAv2/GQA add ``protocols``: both side by side)."""
    return cfg.spec.score(refs, results, cfg.protocol, partial=cfg.limit is not None, meteor=cfg.meteor)


def add_clip_score(cfg: EvalConfig, questions, answers: list[dict], metrics: dict[str, Any]) -> None:
    """CLIPScore for captions when local open_clip weights are given; otherwise a note says how."""
    if cfg.clip_weights is None:
        metrics.setdefault("notes", []).append(
            "CLIPScore skipped: set CLIP_WEIGHTS=<local open_clip checkpoint> (and CLIP_MODEL, default ViT-B-32)"
        )
        return
    from llava_structlora.metrics.clipscore import clip_score

    images = {q.qid: q.image for q in questions}
    metrics["CLIPScore"] = clip_score(
        [images[a["question_id"]] for a in answers],
        [a["text"] for a in answers],
        cfg.clip_weights,
        cfg.clip_model,
        cfg.device,
    )
    metrics["clip_model"] = cfg.clip_model


def _write_submission(cfg: EvalConfig, data_root: Path, answers: list[dict], out: Path) -> dict[str, Any]:
    results = cfg.spec.to_results(answers, submission=True, protocol=cfg.protocol)
    info: dict[str, Any] = {"submission": str(out / "submission.json"), "n": len(results)}
    results, n_pad = cfg.spec.pad_submission(results, data_root, cfg.split)
    if n_pad is not None:
        info["n_padded_empty"] = n_pad
    atomic_write_json(out / "submission.json", results, indent=None)
    return info


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Run the whole evaluation with its output dir locked (a second evaluation into it exits 2)."""
    with locked_output(cfg.output_dir, "evaluation"):
        return _evaluate(cfg)


def _evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Run the whole evaluation; returns what is written to metrics.json."""
    t0 = time.time()
    data_root, out = Path(cfg.data_root), Path(cfg.output_dir)
    qfile = cfg.spec.questions_jsonl(data_root, cfg.split)
    check_split(cfg.spec, data_root, cfg.split)
    questions = load_questions(qfile, _image_folder(qfile))
    n_in_split = len(questions)
    known = {q.qid for q in questions}  # answers beyond --limit (an earlier, larger run) are kept, not merged
    questions = questions[: cfg.limit] if cfg.limit else questions
    refs = cfg.spec.references(data_root, cfg.split)
    if cfg.spec.has_answers(refs):  # before a single answer is generated
        cfg.spec.check_questions([q.qid for q in questions], qfile, refs)
    out.mkdir(parents=True, exist_ok=True)
    key = _check_key(cfg, out, qfile)
    job = ShardJob(
        base=str(cfg.model),
        adapter=cfg.adapter,
        dtype=cfg.dtype,
        device=cfg.device,
        batch_size=cfg.batch_size,
        max_new_tokens=cfg.max_new_tokens,
        model_id=cfg.model_id,
        metadata={},
        answers_dir=str(out / "answers"),
        world=cfg.num_gpus,
        system=cfg.system,
        attn_implementation=cfg.attn_implementation,
    )
    n_new = generate_sharded(job, questions)
    t_gen = time.time() - t0
    answers = merge_answers(out / "answers", questions, out / "answers.jsonl", known_ids=known)
    if cfg.spec.has_answers(refs):
        atomic_write_json(out / "results.json", cfg.spec.to_results(answers), indent=None)
        metrics = score(cfg, refs, out / "results.json")
        if cfg.spec.captions:
            add_clip_score(cfg, questions, answers, metrics)
    else:
        metrics = _write_submission(cfg, data_root, answers, out)
    metrics.update(
        {
            "task": cfg.task,
            "split": cfg.split,
            "protocol": cfg.protocol,
            "model": str(cfg.model),
            "adapter": cfg.adapter,
            "adapter_digest": key["adapter_digest"],
            "model_digest": key["model_digest"],
            "conv_template": cfg.conv_template,
            "n_questions": len(questions),
            "limit": cfg.limit,
            "n_questions_in_split": n_in_split,
            "n_generated_this_run": n_new,
            "generation_s": round(t_gen, 2),
            "total_s": round(time.time() - t0, 2),
        }
    )
    atomic_write_json(out / "metrics.json", metrics)
    return metrics


def summary(metrics: dict) -> str:
    """One human line: the main numbers, or where the submission went."""
    if "submission" in metrics:
        return f"submission file (upload it to the official server): {metrics['submission']}"
    subset = f" [first {metrics['limit']} of {metrics['n_questions_in_split']}]" if metrics.get("limit") else ""
    by = metrics.get("protocols") or {metrics.get("protocol", "official"): metrics}
    head = f"{'VQAv2' if 'overall' in metrics else 'GQA'} {metrics['split']}{subset}"
    if "overall" in metrics:
        parts = [
            f"({p}): overall {m['overall']:.2f} ("
            + ", ".join(f"{k} {v:.2f}" for k, v in m["per_answer_type"].items())
            + ")"
            for p, m in by.items()
        ]
        return f"{head} " + " | ".join(parts)
    if "accuracy" in metrics:
        return f"{head} " + " | ".join(f"({p}): accuracy {m['accuracy']:.2f}" for p, m in by.items())
    keys = [k for k in ("CIDEr", "Bleu_4", "METEOR", "ROUGE_L") if metrics.get(k) is not None]
    return f"COCO {metrics['split']}{subset}: " + ", ".join(f"{k} {metrics[k]:.4f}" for k in keys)
