"""The one Python call of eval/{vqav2,gqa,coco_caption}.sh: environment defaults -> evaluate().

    python -m recipes.evaluate --task vqav2

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
import sys
from pathlib import Path

from llava_structlora.evaluation.config import TASKS, EvalConfig
from llava_structlora.evaluation.run import summary
from llava_structlora.rundir import RunDir

from .env import env, env_int
from .env import preset as env_preset
from .layout import RepoLayout, is_smoke_name

FINETUNE_SCRIPT = {
    "vqav2": "scripts/finetune_vqav2.sh",
    "gqa": "scripts/finetune_gqa.sh",
    "coco": "scripts/finetune_coco.sh",
}


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
            f"    {prefix}bash {FINETUNE_SCRIPT[task]}\n"
            f"or point ADAPTER=<dir> at an adapter (ADAPTER=none evaluates the base)."
        )
    return max(mine, key=lambda d: RunDir(d).deliverable().stat().st_mtime)


def _run_base(run: Path | None) -> str | None:
    base = RunDir(run).read_run().get("base_model") if run is not None else None
    return base if base and Path(base).is_dir() else None


def _default_gpus() -> int:
    import torch

    return max(1, torch.cuda.device_count())


def _default_dtype() -> str:
    import torch

    return "bf16" if torch.cuda.is_available() else "fp32"


def config_from_env(task: str, layout: RepoLayout | None = None) -> EvalConfig:
    """The EvalConfig of eval/<task>.sh from its environment variables (module docstring)."""
    layout = layout or RepoLayout.checkout()
    preset = env_preset()
    adapter = env("ADAPTER")
    run = None
    if adapter is None:
        run = newest_run(task, preset == "smoke", layout.outputs)
        adapter = str(run)
    elif adapter.lower() == "none":
        adapter = None
    else:
        run = Path(adapter) if RunDir(adapter).is_finished() else None
    model = env("MODEL") or _run_base(run) or str(layout.base(preset))
    data_root = env("DATA_ROOT", str(layout.data(preset)))
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
    split = env("SPLIT", TASKS[task].default_split)
    protocol = env("PROTOCOL", "official")
    where = run if run is not None else layout.outputs / "eval-base"
    out = env("OUTPUT_DIR", str(where / "eval" / f"{task}-{split}-{protocol}"))
    return EvalConfig(
        task=task,
        model=model,
        data_root=data_root,
        output_dir=out,
        split=split,
        adapter=adapter,
        batch_size=env_int("BATCH_SIZE", 32),
        num_gpus=env_int("NUM_GPUS", _default_gpus()),
        protocol=protocol,
        clip_weights=env("CLIP_WEIGHTS"),
        clip_model=env("CLIP_MODEL", "ViT-B-32"),
        conv_template=env("CONV_TEMPLATE"),
        limit=int(env("LIMIT")) if env("LIMIT") else None,
        dtype=env("DTYPE", _default_dtype()),
        attn_implementation=env("ATTN_IMPLEMENTATION"),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=sorted(TASKS), required=True)
    args = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        cfg = config_from_env(args.task)
        print(
            f"[eval] {args.task} {cfg.split}: model {cfg.model}, adapter {cfg.adapter}, data {cfg.data_root}, "
            f"output {cfg.output_dir}",
            file=sys.stderr,
            flush=True,
        )
        from llava_structlora.evaluation.run import evaluate

        metrics = evaluate(cfg)
    except (RecipeError, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"[eval] error: {e}", file=sys.stderr)
        return 2
    print(f"[eval] {summary(metrics)}  (metrics: {Path(cfg.output_dir) / 'metrics.json'})", file=sys.stderr)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
