"""The one Python call of scripts/finetune_{coco,vqav2,gqa}.sh.

    python -m llava_structlora.train.pipeline --task coco [extra train flags ...]

1. offline defaults: when MODEL / DATA_ROOT are unset, build (or reuse, both are cached) the shapes
   world and the tiny base: data_prep.build_default, llava_structlora.toy.build_base;
2. validate the whole training configuration here, before anything is launched;
3. launch `deepspeed [--hostfile H] --num_gpus N --master_port P --module llava_structlora.train ...`
   (DeepSpeed's CPU accelerator with N=2 ranks on a machine without GPUs; NO_DEEPSPEED=1 uses
   torchrun / one plain process instead);
4. validate the adapter and the base (EVAL=0 skips), print where the adapter and the scores are.

Environment (defaults in brackets): MODEL, DATA_ROOT [artifacts/{base,data}/<preset>], OUTPUT_DIR
[outputs/<task>-<method>-r<rank>-s<seed>], METHOD [structlora], RANK [8], SEED [0], DATA_FRACTION [1],
NUM_GPUS [GPUs, or 2 CPU ranks], HOSTFILE, MASTER_PORT [a free port], ZERO [zero_configs/zero2.json],
SMOKE [0], RESUME [auto], EVAL [1], NO_DEEPSPEED [0], ARCH [llava] (`next`: the toy base as LLaVA-NeXT,
artifacts/base/<preset>-next, converted from the LLaVA-1.5 one; ignored when MODEL is set).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from llava_structlora.utils.errors import entry_point

from .config import TASKS, ConfigError, env_flag, parse_args

ROOT = Path(__file__).resolve().parents[2]
MAIN_METRIC = {"coco": "CIDEr", "vqav2": "overall", "gqa": "accuracy"}


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "")
    return value if value != "" else default


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _num_ranks() -> int:
    import torch

    raw = _env("NUM_GPUS", str(torch.cuda.device_count() or 2))
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"environment NUM_GPUS={raw!r}: expected a positive int")
    return int(raw)


ARCHS = ("llava", "next")  # ARCH: which toy base the offline default builds (LLaVA-1.5 or LLaVA-NeXT)


def toy_arch() -> str:
    """ARCH [llava]: `next` converts the toy LLaVA-1.5 base into a LLaVA-NeXT (anyres) one."""
    arch = _env("ARCH", "llava")
    if arch not in ARCHS:
        raise ConfigError(f"environment ARCH={arch!r}: expected one of {list(ARCHS)}")
    return arch


def default_paths(preset: str) -> tuple[Path, Path]:
    """MODEL and DATA_ROOT from the environment, else the offline defaults' locations."""
    data_env, model_env = os.environ.get("DATA_ROOT"), os.environ.get("MODEL")
    data_root = Path(data_env) if data_env else ROOT / "artifacts" / "data" / preset
    suffix = "" if toy_arch() == "llava" else f"-{toy_arch()}"
    model = Path(model_env) if model_env else ROOT / "artifacts" / "base" / f"{preset}{suffix}"
    return model, data_root


def ensure_defaults(preset: str) -> tuple[Path, Path]:
    """MODEL and DATA_ROOT, building the offline defaults when unset (all builders are cached)."""
    data_env, model_env = os.environ.get("DATA_ROOT"), os.environ.get("MODEL")
    model, data_root = default_paths(preset)
    if not data_env:
        from data_prep.build_default import main as build_data

        build_data(["--root", str(data_root), "--preset", preset])
    if not model_env:
        from llava_structlora.toy.build_base import main as build_base

        base = ROOT / "artifacts" / "base" / preset
        build_base(["--data", str(data_root), "--out", str(base), "--preset", preset])
        if toy_arch() == "next":
            from llava_structlora.toy.build_next import main as build_next

            build_next(["--from", str(base), "--out", str(model)])
    return model, data_root


def train_argv(task: str, preset: str, model: Path, data_root: Path, out_dir: Path, extra: list[str]) -> list[str]:
    cfg = ROOT / "configs" / (f"{task}_smoke.yaml" if preset == "smoke" else f"{task}.yaml")
    argv = ["--config", str(cfg), "--task", task, "--model_name_or_path", str(model),
            "--data_path", str(data_root / task / "llava_train.json"), "--data_root", str(data_root),
            "--output_dir", str(out_dir), "--method", _env("METHOD", "structlora"),
            "--lora_r", _env("RANK", "8"), "--seed", _env("SEED", "0"),
            "--data_fraction", _env("DATA_FRACTION", "1"), "--resume", _env("RESUME", "auto"),
            "--run_eval", "false"]
    if not env_flag("NO_DEEPSPEED", False):
        argv += ["--deepspeed", _resolve(_env("ZERO", "zero_configs/zero2.json"))]
    return argv + extra


def _resolve(path: str) -> str:
    p = Path(path)
    return str(p if p.is_absolute() or p.exists() else ROOT / p)


def launch_command(argv: list[str], ranks: int) -> tuple[list[str], dict[str, str]]:
    """The deepspeed (or torchrun / python) command line and its environment."""
    env = dict(os.environ)
    import torch

    if not torch.cuda.is_available():
        env.setdefault("DS_ACCELERATOR", "cpu")
        env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 2) // ranks))
    port = _env("MASTER_PORT", str(_free_port()))
    py = sys.executable
    if env_flag("NO_DEEPSPEED", False):
        if ranks == 1:
            return [py, "-m", "llava_structlora.train", *argv], env
        return [py, "-m", "torch.distributed.run", f"--nproc_per_node={ranks}", f"--master_port={port}",
                "-m", "llava_structlora.train", *argv], env
    cmd = [py, "-m", "deepspeed.launcher.runner"]
    if os.environ.get("HOSTFILE"):
        cmd += ["--hostfile", os.environ["HOSTFILE"]]
    cmd += ["--num_gpus", str(ranks), "--master_port", port, "--no_local_rank", "--module",
            "llava_structlora.train", *argv]
    return cmd, env


def _base_eval_dir(model: Path, task: str, split: str, conv_template: str) -> Path:
    """Base answers are reused across runs, keyed by the base's weights file identity (and prompt format)."""
    from llava_structlora.data.conversation import DEFAULT_CONV_TEMPLATE

    weights = sorted(model.glob("*.safetensors"))
    ident = [str(model.resolve())] + [f"{w.name}:{w.stat().st_size}:{w.stat().st_mtime_ns}" for w in weights]
    if conv_template != DEFAULT_CONV_TEMPLATE:  # the default keeps the cache keys of earlier versions
        ident.append(f"conv_template={conv_template}")
    key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:12]
    return ROOT / "artifacts" / "eval_cache" / f"{task}-{split}-{key}"


def evaluate_both(task: str, model: Path, data_root: Path, out_dir: Path, split: str, batch_size: int,
                  conv_template: str) -> dict:
    """Validation of the trained adapter (metrics.json) and of the base (metrics_base.json), same prompts."""
    from llava_structlora.evaluation import EvalConfig, evaluate
    from llava_structlora.utils.io import atomic_write_json

    from .outputs import _adapter_for_eval

    adapter = _adapter_for_eval(out_dir)
    scores = {}
    for which, adp, work in (("adapter", adapter, out_dir / "eval_adapter"),
                             ("base", None, _base_eval_dir(model, task, split, conv_template))):
        cached = work / "metrics.json"
        if which == "base" and cached.is_file():  # the base did not change (cache key = its weights)
            metrics = json.loads(cached.read_text())
        else:
            cfg = EvalConfig(task=task, model=str(model), data_root=str(data_root), output_dir=str(work),
                             split=split, adapter=str(adp) if adp else None, batch_size=batch_size,
                             conv_template=conv_template, overwrite=True)
            metrics = evaluate(cfg)
        name = "metrics.json" if which == "adapter" else "metrics_base.json"
        atomic_write_json(out_dir / name, {"which": which, **metrics})
        scores[which] = metrics
    return scores


def score_line(task: str, split: str, scores: dict) -> str:
    """Adapter vs base on the main metric; VQAv2/GQA under both protocols (official first)."""
    key = MAIN_METRIC[task]
    line = f"{task} {split} {key}: adapter {scores['adapter'].get(key):.4f} | base {scores['base'].get(key):.4f}"
    llava = [(scores[w].get("protocols") or {}).get("llava", {}).get(key) for w in ("adapter", "base")]
    if None not in llava:
        line += f" ({scores['adapter'].get('protocol')} protocol); llava protocol: adapter {llava[0]:.4f} | " \
                f"base {llava[1]:.4f}"
    return line


@entry_point("finetune")
def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, choices=TASKS)
    args, extra = ap.parse_known_args(argv)
    t0 = time.time()
    try:
        preset = "smoke" if env_flag("SMOKE", False) else "default"
        method, rank, seed = _env("METHOD", "structlora"), _env("RANK", "8"), _env("SEED", "0")
        arch = "" if os.environ.get("MODEL") or toy_arch() == "llava" else f"-{toy_arch()}"
        run_name = f"{args.task}-{method}-r{rank}-s{seed}{arch}" + ("-smoke" if preset == "smoke" else "")
        out_dir = Path(_env("OUTPUT_DIR", str(ROOT / "outputs" / run_name)))
        do_eval = env_flag("EVAL", True)
        ranks = _num_ranks()
        model, data_root = default_paths(preset)
        parse_args(train_argv(args.task, preset, model, data_root, out_dir, extra), check_paths=False,
                   with_deepspeed=False)  # values first: a typo fails in seconds, before any build
        model, data_root = ensure_defaults(preset)
        targv = train_argv(args.task, preset, model, data_root, out_dir, extra)
        _, dargs, _, targs = parse_args(targv, with_deepspeed=False)  # paths too, still before launch
    except (ConfigError, FileNotFoundError) as e:
        print(f"[finetune] configuration error: {e}", file=sys.stderr, flush=True)
        return 2
    cmd, env = launch_command(targv, ranks)
    print(f"[finetune] {shlex.join(cmd)}", flush=True)
    rc = subprocess.run(cmd, env=env, cwd=ROOT).returncode
    if rc != 0:
        print(f"[finetune] training failed (exit {rc}); complete checkpoints in {out_dir} "
              f"(RESUME=auto continues from the newest)", file=sys.stderr, flush=True)
        return rc
    print(f"[finetune] adapter: {_adapter_path(out_dir)}", flush=True)
    if do_eval:
        scores = evaluate_both(args.task, model, data_root, out_dir, dargs.eval_split, dargs.eval_batch_size,
                               dargs.conv_template)
        print(f"[finetune] {score_line(args.task, dargs.eval_split, scores)}  (scores: {out_dir / 'metrics.json'}, "
              f"{out_dir / 'metrics_base.json'})", flush=True)
    print(f"[finetune] done in {time.time() - t0:.1f} s: {out_dir}", flush=True)
    return 0


def _adapter_path(out_dir: Path) -> Path:
    return out_dir / ("adapter" if (out_dir / "adapter").is_dir() else "model")


if __name__ == "__main__":
    sys.exit(main())
