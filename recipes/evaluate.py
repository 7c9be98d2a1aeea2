"""The one Python call of eval/{vqav2,gqa,coco_caption}.sh: recipe defaults < flags < environment -> evaluate().

    python -m recipes.evaluate --task vqav2 [--limit 100 --batch-size 8 ...]

Every option of `python -m llava_structlora.evaluation` is also a flag here (both generated from EvalConfig's
fields; `--help` lists them). The environment variables below, when set, beat the flags.

Environment (defaults in brackets):
  ADAPTER     [newest outputs/<task>-*/ run of scripts/finetune_<task>.sh]; `none` = the base alone
  MODEL       [the run's run.json base_model, else artifacts/base/<preset>]
  DATA_ROOT   [artifacts/data/<preset>]
  SPLIT       [vqav2 val, gqa testdev, coco test]; VQAv2 test-dev writes the EvalAI submission
  PROTOCOL [official]  BATCH_SIZE [32]  NUM_GPUS [GPUs, else 1]  OUTPUT_DIR [<run>/eval/<task>-<split>-<protocol>]
  SMOKE [0]   1 = smoke preset (artifacts/*/smoke, *-smoke runs), as for scripts/finetune_<task>.sh
  CONV_TEMPLATE [the run's run.json]  vicuna_v1_nosys | vicuna_v1: the conversation format (must match training)
  LIMIT       [all]  evaluate the first N questions only
  DTYPE [bf16 on GPUs, else fp32]   bf16 | fp16 | fp32: dtype the base is loaded (and generates) in
  ATTN_IMPLEMENTATION [transformers' default]   sdpa | eager | flash_attention_2
  CLIP_WEIGHTS, CLIP_MODEL [ViT-B-32]   coco: CLIPScore from a local open_clip checkpoint (skipped otherwise)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from llava_structlora.evaluation.config import TASKS, EvalConfig, add_eval_arguments
from llava_structlora.evaluation.run import evaluate, summary
from llava_structlora.rundir import RunDir

from .env import env, env_int
from .env import preset as env_preset
from .layout import RepoLayout, is_smoke_name


class RecipeError(RuntimeError):
    """A missing prerequisite; the message says which command to run."""


def newest_run(task: str, smoke: bool, outputs: Path | None = None) -> Path:
    """Most recent finished run of scripts/finetune_<task>.sh (by its adapter's mtime).

    Args:
        smoke: look for the smoke preset's runs (`*-smoke`), as SMOKE=1 trained them.
        outputs: where the runs are (default: the checkout's outputs/).
    """
    outputs = outputs if outputs is not None else RepoLayout.checkout().outputs
    runs = [d for d in outputs.glob(f"{task}-*") if d.is_dir() and RunDir(d).is_finished()]
    mine = [d for d in runs if is_smoke_name(d.name) == smoke]
    if not mine:
        hint = ""
        if runs:
            hint = f" (found {'non-smoke' if smoke else 'smoke'} runs: set SMOKE={0 if smoke else 1})"
        prefix = "SMOKE=1 " if smoke else ""
        raise RecipeError(
            f"no finished {task} run under {outputs}{hint}. Train one first:\n"
            f"    {prefix}bash {RepoLayout.finetune_script(task)}\n"
            f"or point ADAPTER=<dir> at an adapter (ADAPTER=none evaluates the base)."
        )
    return max(mine, key=lambda d: RunDir(d).deliverable().stat().st_mtime)


def _run_base(run: Path | None) -> str | None:
    base = RunDir(run).read_run().get("base_model") if run is not None else None
    return base if base and Path(base).is_dir() else None


def _default_gpus() -> int:
    return max(1, torch.cuda.device_count())


def _default_dtype() -> str:
    return "bf16" if torch.cuda.is_available() else "fp32"


# EvalConfig fields an environment variable of the same name in capitals sets (when set: it beats a flag).
ENV_FIELDS = (
    "adapter",
    "model",
    "data_root",
    "split",
    "protocol",
    "batch_size",
    "num_gpus",
    "output_dir",
    "conv_template",
    "limit",
    "dtype",
    "attn_implementation",
    "clip_weights",
    "clip_model",
)
_INT_FIELDS = {"batch_size": 1, "num_gpus": 1, "limit": 1}  # field -> minimum


def _options(flags: dict[str, Any]) -> dict[str, Any]:
    """The flags given to the script, with the set environment variables on top (docs: precedence)."""
    out = dict(flags)
    for name in ENV_FIELDS:
        if env(name.upper()) is None:
            continue
        out[name] = env_int(name.upper(), 0, _INT_FIELDS[name]) if name in _INT_FIELDS else env(name.upper())
    return out


def config_from_env(task: str, layout: RepoLayout | None = None, flags: dict[str, Any] | None = None) -> EvalConfig:
    """The EvalConfig of eval/<task>.sh: the recipe's defaults < the script's flags < set environment variables.

    Args:
        flags: EvalConfig field -> value the user passed as a flag (only those given).
    """
    layout = layout or RepoLayout.checkout()
    preset = env_preset()
    opts = _options(flags or {})
    adapter = opts.pop("adapter", None)
    run = None
    if adapter is None:
        run = newest_run(task, preset == "smoke", layout.outputs)
        adapter = str(run)
    elif adapter.lower() == "none":
        adapter = None
    else:
        run = Path(adapter) if RunDir(adapter).is_finished() else None
    model = opts.pop("model", None) or _run_base(run) or str(layout.base(preset))
    data_root = opts.pop("data_root", None) or str(layout.data(preset))
    for path, what, cmd in (
        (
            model,
            "base model",
            f"python -m llava_structlora.toy.build_base --data {data_root} --out {model} --preset {preset}",
        ),
        (data_root, "data", f"python -m data_prep.build_default --root {data_root} --preset {preset}"),
    ):
        if not Path(path).is_dir():
            raise RecipeError(
                f"{what} {path} not found; build it with:\n    {cmd}\n"
                f"(scripts/finetune_{task}.sh builds both) or set "
                f"{'MODEL' if what == 'base model' else 'DATA_ROOT'}="
            )
    split = opts.pop("split", None) or TASKS[task].default_split
    protocol = opts.pop("protocol", None) or "official"
    where = run if run is not None else layout.outputs / "eval-base"
    out = opts.pop("output_dir", None)
    if out is None:  # the recipe's own answers dir describes the adapter there now: stale answers are replaced
        out = str(where / "eval" / f"{task}-{split}-{protocol}")
        opts.setdefault("overwrite", True)
    opts.setdefault("batch_size", 32)
    opts.setdefault("num_gpus", _default_gpus())
    opts.setdefault("dtype", _default_dtype())
    return EvalConfig(
        task=task,
        model=model,
        data_root=data_root,
        output_dir=out,
        split=split,
        adapter=adapter,
        protocol=protocol,
        **opts,
    )


def build_parser() -> argparse.ArgumentParser:
    """`--task` plus every EvalConfig option (generated from its fields; all optional here: the recipe fills in
    the newest run, the default data and base, the output dir)."""
    p = argparse.ArgumentParser(
        prog="python -m recipes.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--task", choices=sorted(TASKS), required=True)
    add_eval_arguments(p, required=False, skip=("task",))
    return p


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    task = args.pop("task")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        cfg = config_from_env(task, flags=args)
        print(
            f"[eval] {task} {cfg.split}: model {cfg.model}, adapter {cfg.adapter}, data {cfg.data_root}, "
            f"output {cfg.output_dir}",
            file=sys.stderr,
            flush=True,
        )
        metrics = evaluate(cfg)
    except (RecipeError, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"[eval] error: {e}", file=sys.stderr)
        return 2
    print(f"[eval] {summary(metrics)}  (metrics: {Path(cfg.output_dir) / 'metrics.json'})", file=sys.stderr)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
