"""What every experiment entry point (``python -m experiments``, base_margin, workers) shares: the
artifacts a suite trains on and where its records go."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .suite import SuiteConfig

logger = logging.getLogger("experiments")


def ensure_artifacts(suite: SuiteConfig) -> None:
    """Build (or find up to date: both builders are cached by stamps) the shapes world and tiny base,
    then snapshot the base into the suite's directory (cached runs are keyed by its stamp)."""
    import shutil

    from data_prep.build_default import build_default
    from llava_structlora.toy.build_base import build_base
    from llava_structlora.utils.io import atomic_directory

    build_default(suite.data_root, suite.preset, seed=suite.world_seed)
    build_base(suite.data_root, suite.shared_base_dir, suite.preset)
    stamp = "build_stamp.json"
    snap, shared = suite.base_dir / stamp, suite.shared_base_dir / stamp
    if not snap.exists() or snap.read_bytes() != shared.read_bytes():
        with atomic_directory(suite.base_dir) as tmp:
            shutil.copytree(suite.shared_base_dir, tmp, dirs_exist_ok=True)
        logger.info("snapshot of %s -> %s", suite.shared_base_dir, suite.base_dir)


def record(name: str, title: str, data: dict, md: str, suite: SuiteConfig, command: str) -> Path:
    """Full and deep suites: record_result (docs/results + RESULTS.md) under suite.record_name (a replication on
    another world or the deep testbed under its own name, never mixed into the summary of the default testbed).
    Every suite also keeps the record under its out_root."""
    from recipes import results

    published = suite.record_name(name)
    if published == name:
        return results.record_result(name, title, data, md, command=command, seeds=suite.seeds)
    if published and name != "experiments__summary":
        prefix = f"[world seed {suite.world_seed}] " if suite.world_seed else ""
        prefix = ("[deep testbed] " if suite.name == "deep" else "") + prefix
        results.record_result(published, prefix + title, data, md, command=command, seeds=suite.seeds)
    out_dir = suite.out_root / "records"
    from llava_structlora.utils.io import atomic_write_json

    rec = {
        "name": name,
        "title": f"[{suite.name}] {title}",
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "git_commit": results.git_commit(),
        "machine": results.machine_info(),
        "seeds": list(suite.seeds),
        "data": data,
        "markdown": md,
    }
    path = atomic_write_json(out_dir / f"{name}.json", rec)
    results.render(out_dir, suite.out_root / "RESULTS.md")
    return path
