"""Execute one RunSpec through the real entry points and cache its result as JSON.

Training goes through ``llava_structlora.train.main.run(argv)`` (what ``python -m
llava_structlora.train`` calls) as one plain process: on 2 CPU cores a 2-rank DeepSpeed run gives
no speed-up, and AdaLoRA refuses DeepSpeed anyway, so every method takes the same path.
Evaluation goes through ``llava_structlora.evaluation.run.evaluate`` on the derived val/test
splits (eval_data.py) with the official-rule scorers. All runs execute inside one Python process
(the harness's), which saves the ~15 s of imports per run that 150 subprocesses would cost; each
run reseeds everything through the trainer.

Cache: ``<out_root>/results/<key>.json`` is written atomically after a run is fully evaluated, so
an interrupted suite resumes at the first run without a result (its partial run dir is wiped).
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from llava_structlora.rundir import RunDir
from llava_structlora.utils.io import atomic_write_json

from .suite import METRIC, METRIC_SCALE, RunSpec, SuiteConfig


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The code state this process trains with (read once: a merge during a long suite does not relabel
    the runs of code already imported); tables say when their runs span several."""
    from recipes.results import git_commit as commit

    return commit()


logger = logging.getLogger("experiments")


def result_path(spec: RunSpec, suite: SuiteConfig) -> Path:
    return suite.out_root / "results" / f"{spec.key(suite)}.json"


def run_dir(spec: RunSpec, suite: SuiteConfig) -> Path:
    return suite.out_root / "runs" / spec.key(suite)


def cached(spec: RunSpec, suite: SuiteConfig) -> dict[str, Any] | None:
    path = result_path(spec, suite)
    return json.loads(path.read_text()) if path.exists() else None


def evaluate_run(spec: RunSpec, suite: SuiteConfig, out: Path, split: str) -> dict[str, Any]:
    """Real evaluation code on the derived split; returns its metrics plus the headline score."""
    from llava_structlora.evaluation.config import EvalConfig
    from llava_structlora.evaluation.run import evaluate

    cfg = EvalConfig(
        task=spec.task,
        model=str(suite.base_dir),
        data_root=str(suite.out_root / "eval_data"),
        output_dir=str(RunDir(out).eval_dir(split)),
        split=split,
        adapter=str(RunDir(out).adapter),
        batch_size=suite.eval_batch_size,
        overwrite=True,
        meteor=False,
    )  # ~16 s of Java per scoring; the tables report CIDEr
    metrics = evaluate(cfg)
    key = METRIC[spec.task]
    if metrics.get(key) is None:
        raise RuntimeError(f"{out}/eval_{split}/metrics.json has no {key!r}: {sorted(metrics)}")
    return {"score": float(metrics[key]) * METRIC_SCALE[spec.task], "metrics": metrics}


def _structlora_diagnostics(out: Path) -> dict[str, Any] | None:
    """The trainer's last diagnostics record (StructLoRA runs only): gate values, open directions, ...

    Also keeps the first record's gate values (``first_gate_values``, ``first_step``) so that the gate
    movement can be measured when the run has no what-moved record (see gate_shift)."""
    from llava_structlora.train.callbacks import read_diagnostics

    records = read_diagnostics(RunDir(out).diagnostics)
    if not records:
        return None
    first = records[0]
    return {**records[-1], "first_gate_values": first.get("gate_values"), "first_step": first.get("step")}


def _what_moved(out: Path, base_dir: Path) -> dict[str, Any] | None:
    """What training moved in a StructLoRA run (eval-gate histograms at init/end, open directions per layer,
    modulation mean, update norms): the trainer's record if it wrote one, else structlora_moved on the
    run's saved StructLoRA state (``out/structlora``). None for other methods."""
    run = RunDir(out)
    for path in (out / "what_moved.json", run.moved):  # what_moved.json: older runs
        if path.exists():
            return json.loads(path.read_text())
    if not run.structlora.is_dir():
        return None
    import torch
    from transformers import LlavaForConditionalGeneration

    from llava_structlora import structlora as sl

    if not hasattr(sl, "structlora_moved"):  # a code state without the record (before the what-moved record existed)
        return None
    model = LlavaForConditionalGeneration.from_pretrained(str(base_dir), dtype=torch.float32)
    sl.load_structlora(model, run.structlora)
    model.eval()
    return sl.structlora_moved(model)


def execute(spec: RunSpec, suite: SuiteConfig) -> dict[str, Any]:
    """Train, evaluate on val and test, measure the update geometry; cache and return the result.

    A run that raises is logged, written to ``results/<key>.failed.txt`` and returned as a failed
    result (NaN scores, shown as missing seeds in the tables) so that one broken configuration does
    not stop the suite; it is not cached, so the next invocation retries it."""
    hit = cached(spec, suite)
    if hit is not None:
        return hit
    try:
        return _execute(spec, suite)
    except Exception as exc:  # noqa: BLE001 - reported in the table and in the .failed.txt file
        import traceback

        from llava_structlora.utils.io import atomic_write_text

        logger.error("run %s FAILED: %s: %s", spec.key(suite), type(exc).__name__, exc)
        atomic_write_text(result_path(spec, suite).with_suffix(".failed.txt"), traceback.format_exc())
        nan = {"score": float("nan"), "metrics": {}}
        return {
            "key": spec.key(suite),
            "failed": f"{type(exc).__name__}: {exc}",
            "val": nan,
            "test": nan,
            "geometry": {"drift_energy": float("nan"), "cos_adj": float("nan")},
            "structlora_diagnostics": None,
            "train_s": float("nan"),
            "total_s": float("nan"),
        }


def _execute(spec: RunSpec, suite: SuiteConfig) -> dict[str, Any]:
    from llava_structlora.train.main import run as train_run

    from .adapter_stats import adapter_stats

    out = run_dir(spec, suite)
    shutil.rmtree(out, ignore_errors=True)  # leftovers of an interrupted attempt
    t0 = time.time()
    logger.info("run %s", spec.key(suite))
    train_run(spec.train_argv(suite, out))
    t_train = time.time() - t0
    run_json = json.loads(RunDir(out).run_json.read_text())
    skipped = {"score": None, "skipped": "tuning-seed runs are scored on val, reporting seeds on test"}
    val, test = (evaluate_run(spec, suite, out, s) if s in spec.splits(suite) else skipped for s in ("val", "test"))
    result = {
        "key": spec.key(suite),
        "spec": {**spec.__dict__, "overrides": dict(spec.overrides)},
        "suite": suite.to_dict(),
        "val": val,
        "test": test,
        "git_commit": git_commit(),
        "geometry": adapter_stats(suite.base_dir, RunDir(out).adapter),
        "structlora_diagnostics": _structlora_diagnostics(out),
        "what_moved": _what_moved(out, suite.base_dir),
        "final_loss": run_json.get("final_loss"),
        "global_step": run_json.get("global_step"),
        "train_s": round(t_train, 1),
        "total_s": round(time.time() - t0, 1),
        "run_dir": str(out),
    }
    atomic_write_json(result_path(spec, suite), result)
    logger.info("done %s: val %s test %s (%.0f s)", spec.key(suite), val["score"], test["score"], result["total_s"])
    return result
