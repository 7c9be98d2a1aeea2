"""Sharded, resumable generation: N processes (one per GPU, or N CPU workers), rank k answering
every k-th remaining question into its own JSONL, merged at the end in question order.

Resume: the ids already present in ANY shard file of the answers dir are skipped (so a rerun
with a different number of processes neither redoes nor duplicates work); each rank appends only
to its own file, so there is never more than one writer per file.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from llava_structlora.utils.io import atomic_write_text

from .generate import Question, generate_to_file, read_jsonl, repair_jsonl

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardJob:
    """What a worker needs (picklable: workers are spawned)."""

    base: str
    adapter: str | None
    dtype: str
    device: str
    batch_size: int
    max_new_tokens: int
    model_id: str
    metadata: dict
    answers_dir: str
    world: int
    system: str = ""
    attn_implementation: str | None = None


def shard_path(answers_dir: Path, rank: int, world: int) -> Path:
    return answers_dir / f"shard-{rank:02d}-of-{world:02d}.jsonl"


def shard_files(answers_dir: Path) -> list[Path]:
    return sorted(answers_dir.glob("shard-*.jsonl"))


def answered_ids(answers_dir: Path) -> set:
    """Ids with a complete answer line in any shard file (torn last lines are cut first)."""
    done = set()
    for p in shard_files(answers_dir):
        repair_jsonl(p)
        done.update(r["question_id"] for r in read_jsonl(p))
    return done


def _rank_device(device: str, rank: int) -> str:
    if device.startswith("cuda") and ":" not in device:
        return f"cuda:{rank}"
    return device


def run_shard(rank: int, job: ShardJob, questions: Sequence[Question]) -> int:
    """Load the model (adapter merged) and answer this rank's questions."""
    from .load import load_model

    if job.world > 1 and not job.device.startswith("cuda") and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // job.world))  # CPU workers share the cores
    model, processor = load_model(
        job.base, job.adapter, job.dtype, _rank_device(job.device, rank), attn_implementation=job.attn_implementation
    )
    out = shard_path(Path(job.answers_dir), rank, job.world)
    with tqdm(
        total=len(questions),
        desc=f"rank {rank}/{job.world}",
        file=sys.stderr,
        mininterval=10,
        position=rank,
        leave=False,
    ) as bar:
        n = generate_to_file(
            model,
            processor,
            questions,
            out,
            job.batch_size,
            job.max_new_tokens,
            job.model_id,
            job.metadata,
            job.system,
            bar.update,
        )
    logger.info("rank %d/%d: %d new answers -> %s", rank, job.world, n, out)
    return n


def _worker(rank: int, job: ShardJob, shards: list[list[Question]]) -> None:
    run_shard(rank, job, shards[rank])


def generate_sharded(job: ShardJob, questions: Sequence[Question]) -> int:
    """Answer every question not answered yet, split across `job.world` processes."""
    answers_dir = Path(job.answers_dir)
    answers_dir.mkdir(parents=True, exist_ok=True)
    done = answered_ids(answers_dir)
    todo = [q for q in questions if q.qid not in done]
    logger.info(
        "%d questions, %d already answered, %d to generate on %d process(es)",
        len(questions),
        len(questions) - len(todo),
        len(todo),
        job.world,
    )
    if not todo:
        return 0
    shards = [todo[k :: job.world] for k in range(job.world)]
    if job.world == 1:
        return run_shard(0, job, shards[0])
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(job, shards), nprocs=job.world, join=True)
    return len(todo)


def merge_answers(
    answers_dir: Path, questions: Sequence[Question], out_path: Path, known_ids: set | None = None
) -> list[dict]:
    """All shard answers in question order, each id once, written atomically to `out_path`.

    ``known_ids``: ids of the whole question file when ``questions`` is its first N (``--limit``);
    their answers are left out of the merge instead of being an error.
    """
    import json

    wanted = {q.qid for q in questions}
    known = wanted if known_ids is None else known_ids
    by_id: dict[Any, dict] = {}
    for p in shard_files(answers_dir):
        for r in read_jsonl(p):
            qid = r["question_id"]
            if qid not in wanted and qid in known:
                continue
            if qid not in wanted:
                raise ValueError(
                    f"{p}: answer for question_id {qid!r} which is not in the question file; "
                    f"was this output dir used for another split? Use a new --output-dir"
                )
            if qid in by_id and by_id[qid]["text"] != r["text"]:
                logger.warning("question_id %r answered twice with different text; keeping the first", qid)
            by_id.setdefault(qid, r)
    missing = [q.qid for q in questions if q.qid not in by_id]
    if missing:
        raise RuntimeError(
            f"{len(missing)} questions have no answer in {answers_dir} (e.g. {missing[:5]}); rerun to resume"
        )
    records = [by_id[q.qid] for q in questions]
    atomic_write_text(out_path, "".join(json.dumps(r) + "\n" for r in records))
    return records
