"""The one Python call of eval/{vqav2,gqa,coco_caption}.sh: environment defaults -> evaluate().

    python -m llava_structlora.evaluation.recipe --task vqav2

Environment (defaults in brackets):
  ADAPTER     [newest outputs/<task>-*/ run of scripts/finetune_<task>.sh]; `none` = the base alone
  MODEL       [the run's run.json base_model, else artifacts/base/<preset>]
  DATA_ROOT   [artifacts/data/<preset>]
  SPLIT       [vqav2 val, gqa testdev, coco test]; VQAv2 test-dev writes the EvalAI submission
  PROTOCOL [official]  BATCH_SIZE [32]  NUM_GPUS [GPUs, else 1]  OUTPUT_DIR [<run>/eval/<task>-<split>-<protocol>]
  SMOKE [0]   1 = smoke preset (artifacts/*/smoke, *-smoke runs)
  CONV_TEMPLATE [the run's run.json]  vicuna_v1_nosys | vicuna_v1: the conversation format (must match training)
  LIMIT       [all]  evaluate the first N questions only
  DTYPE [bf16 on GPUs, else fp32]   bf16 | fp16 | fp32: dtype the base is loaded (and generates) in
  ATTN_IMPLEMENTATION [transformers' default]   sdpa | eager | flash_attention_2
  CLIP_WEIGHTS, CLIP_MODEL [ViT-B-32]   coco: CLIPScore from a local open_clip checkpoint (skipped otherwise)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .config import TASKS, EvalConfig

ROOT = Path(__file__).resolve().parents[2]
FINETUNE_SCRIPT = {"vqav2": "scripts/finetune_vqav2.sh", "gqa": "scripts/finetune_gqa.sh",
                   "coco": "scripts/finetune_coco.sh"}


class RecipeError(RuntimeError):
    """A missing prerequisite; the message says which command to run."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "")
    return value if value != "" else default


def _is_run(d: Path) -> bool:
    return (d / "adapter" / "adapter_config.json").is_file() or (d / "model" / "config.json").is_file()


def newest_run(task: str, smoke: bool, outputs: Path = ROOT / "outputs") -> Path:
    """Most recent finished run of scripts/finetune_<task>.sh (by its adapter's mtime)."""
    runs = [d for d in outputs.glob(f"{task}-*") if d.is_dir() and _is_run(d)]
    mine = [d for d in runs if d.name.endswith("-smoke") == smoke]
    if not mine:
        hint = ""
        if runs:
            hint = f" (found {'non-smoke' if smoke else 'smoke'} runs: set SMOKE={0 if smoke else 1})"
        prefix = "SMOKE=1 " if smoke else ""
        raise RecipeError(f"no finished {task} run under {outputs}{hint}. Train one first:\n"
                          f"    {prefix}bash {FINETUNE_SCRIPT[task]}\n"
                          f"or point ADAPTER=<dir> at an adapter (ADAPTER=none evaluates the base).")
    return max(mine, key=lambda d: ((d / "adapter") if (d / "adapter").exists() else (d / "model")).stat().st_mtime)


def _run_base(run: Path | None) -> str | None:
    meta = run / "run.json" if run is not None else None
    if meta is None or not meta.is_file():
        return None
    base = json.loads(meta.read_text()).get("base_model")
    return base if base and Path(base).is_dir() else None


def _default_gpus() -> int:
    import torch

    return max(1, torch.cuda.device_count())


def _default_dtype() -> str:
    import torch

    return "bf16" if torch.cuda.is_available() else "fp32"


def config_from_env(task: str) -> EvalConfig:
    preset = "smoke" if _env("SMOKE", "0") not in ("0", "false", "") else "default"
    adapter = _env("ADAPTER")
    run = None
    if adapter is None:
        run = newest_run(task, preset == "smoke")
        adapter = str(run)
    elif adapter.lower() == "none":
        adapter = None
    else:
        run = Path(adapter) if _is_run(Path(adapter)) else None
    model = _env("MODEL") or _run_base(run) or str(ROOT / "artifacts" / "base" / preset)
    data_root = _env("DATA_ROOT", str(ROOT / "artifacts" / "data" / preset))
    for path, what, cmd in ((model, "base model", f"python -m llava_structlora.toy.build_base --data {data_root} "
                                                  f"--out {model} --preset {preset}"),
                            (data_root, "data", f"python -m data_prep.build_default --root {data_root} "
                                                f"--preset {preset}")):
        if not Path(path).is_dir():
            raise RecipeError(f"{what} {path} not found; build it with:\n    {cmd}\n"
                              f"(scripts/finetune_{task}.sh builds both) or set "
                              f"{'MODEL' if what == 'base model' else 'DATA_ROOT'}=")
    split = _env("SPLIT", TASKS[task].default_split)
    protocol = _env("PROTOCOL", "official")
    where = run if run is not None else ROOT / "outputs" / "eval-base"
    out = _env("OUTPUT_DIR", str(where / "eval" / f"{task}-{split}-{protocol}"))
    return EvalConfig(task=task, model=model, data_root=data_root, output_dir=out, split=split, adapter=adapter,
                      batch_size=int(_env("BATCH_SIZE", "32")), num_gpus=int(_env("NUM_GPUS", str(_default_gpus()))),
                      protocol=protocol, clip_weights=_env("CLIP_WEIGHTS"), clip_model=_env("CLIP_MODEL", "ViT-B-32"),
                      conv_template=_env("CONV_TEMPLATE"), limit=int(_env("LIMIT")) if _env("LIMIT") else None,
                      dtype=_env("DTYPE", _default_dtype()), attn_implementation=_env("ATTN_IMPLEMENTATION"))


def summary(metrics: dict) -> str:
    """One human line: the main numbers, or where the submission went."""
    if "submission" in metrics:
        return f"submission file (upload it to the official server): {metrics['submission']}"
    subset = f" [first {metrics['limit']} of {metrics['n_questions_in_split']}]" if metrics.get("limit") else ""
    by = metrics.get("protocols") or {metrics.get("protocol", "official"): metrics}
    head = f"{'VQAv2' if 'overall' in metrics else 'GQA'} {metrics['split']}{subset}"
    if "overall" in metrics:
        parts = [f"({p}): overall {m['overall']:.2f} (" + ", ".join(f"{k} {v:.2f}" for k, v in
                                                                 m["per_answer_type"].items()) + ")"
                 for p, m in by.items()]
        return f"{head} " + " | ".join(parts)
    if "accuracy" in metrics:
        return f"{head} " + " | ".join(f"({p}): accuracy {m['accuracy']:.2f}" for p, m in by.items())
    keys = [k for k in ("CIDEr", "Bleu_4", "METEOR", "ROUGE_L") if metrics.get(k) is not None]
    return f"COCO {metrics['split']}{subset}: " + ", ".join(f"{k} {metrics[k]:.4f}" for k in keys)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=sorted(TASKS), required=True)
    args = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        cfg = config_from_env(args.task)
        print(f"[eval] {args.task} {cfg.split}: model {cfg.model}, adapter {cfg.adapter}, data {cfg.data_root}, "
              f"output {cfg.output_dir}", file=sys.stderr, flush=True)
        from .run import evaluate

        metrics = evaluate(cfg)
    except (RecipeError, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"[eval] error: {e}", file=sys.stderr)
        return 2
    print(f"[eval] {summary(metrics)}  (metrics: {Path(cfg.output_dir) / 'metrics.json'})", file=sys.stderr)
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
