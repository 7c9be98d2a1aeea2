"""The one Python call of scripts/finetune_{coco,vqav2,gqa}.sh.

    python -m recipes.finetune --task coco [train flags ...]

1. resolve the configuration, lowest to highest precedence: the dataclass defaults < the recipe's paths
   (artifacts/{data,base}/<preset>, zero_configs/zero2.json, RESUME auto) < configs/<task>[_smoke].yaml
   < the flags given here < the environment variables below that are SET; the run directory is named
   from the parsed result (outputs/<task>-<method>-r<r>-s<seed>[-smoke]);
2. build (or reuse, both are cached) the offline shapes world and tiny base when they are the ones used;
3. validate everything, and refuse to resume a run directory trained with another configuration;
4. launch `deepspeed [--hostfile H] --num_gpus N --master_port P --module llava_structlora.train ...`
   (DeepSpeed's CPU accelerator with N=2 ranks on a machine without GPUs; NO_DEEPSPEED=1 uses
   torchrun / one plain process instead);
5. validate the adapter and the base (EVAL=0 skips), print where the adapter and the scores are.

Environment overrides (each beats the YAML and the flags, only when set): MODEL (model_name_or_path),
DATA_ROOT (data_root, and data_path = DATA_ROOT/<task>/llava_train.json), OUTPUT_DIR (output_dir),
METHOD (method), RANK (lora_r), SEED (seed), DATA_FRACTION (data_fraction), RESUME (resume: auto|none|dir),
ZERO (deepspeed). Launcher: NUM_GPUS [GPUs, or 2 CPU ranks], HOSTFILE, MASTER_PORT [a free port],
SMOKE [0; 1 = smoke preset: data, base, YAML, `-smoke` run name], EVAL [1], NO_DEEPSPEED [0],
ARCH [llava] (`next`: the toy base as LLaVA-NeXT, artifacts/base/<preset>-next, converted from the LLaVA-1.5
one, `-next` run name; ignored when MODEL is set).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from llava_structlora.data.conversation import DEFAULT_CONV_TEMPLATE
from llava_structlora.evaluation.tasks import TASKS as EVAL_TASKS
from llava_structlora.rundir import ResumeMismatchError, RunDir, check_resume_identity
from llava_structlora.train.argv import to_tokens
from llava_structlora.train.checkpoints import resolve_resume
from llava_structlora.train.cli import train_parser
from llava_structlora.train.config import (
    MIX_TASK,
    TASKS,
    ConfigError,
    TrainConfig,
    compose_argv,
    parse_config,
    run_identity,
    task_data_path,
    validation_tasks,
)
from llava_structlora.train.main import already_complete
from llava_structlora.train.outputs import run_validation
from llava_structlora.train.validation import check_eval_inputs, check_files
from llava_structlora.utils.errors import run_main
from llava_structlora.utils.outputs import claim_for_process, release_claims
from llava_structlora.utils.procs import run_launcher

from .env import arch as env_arch
from .env import env, env_flag, env_int
from .env import preset as env_preset
from .layout import RepoLayout
from .run_naming import recipe_values, settings_hash, user_options
from .toy_defaults import toy_defaults

# environment variable -> training option it overrides (when set)
ENV_OVERRIDES = {
    "MODEL": "model_name_or_path",
    "OUTPUT_DIR": "output_dir",
    "METHOD": "method",
    "RANK": "lora_r",
    "SEED": "seed",
    "DATA_FRACTION": "data_fraction",
    "RESUME": "resume",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _num_ranks() -> int:
    import torch

    return env_int("NUM_GPUS", torch.cuda.device_count() or 2)


def env_overrides(layout: RepoLayout, task: str, deepspeed: bool) -> dict[str, Any]:
    """Training options set by environment variables (only those that are set)."""
    out: dict[str, Any] = {opt: env(name) for name, opt in ENV_OVERRIDES.items() if env(name) is not None}
    if env("DATA_ROOT"):
        out["data_root"] = env("DATA_ROOT")
        out["data_path"] = task_data_path(env("DATA_ROOT"), task)
    if deepspeed and env("ZERO"):
        out["deepspeed"] = str(layout.resolve(env("ZERO")))
    out["run_eval"] = False  # the recipe validates after the launch (EVAL), once, for adapter and base
    return out


def _launcher_defaults(layout: RepoLayout, task: str, preset: str, deepspeed: bool) -> dict[str, Any]:
    """What the recipe fills in below the YAML: this checkout's paths, resume=auto, the default ZeRO config."""
    return {
        "task": task,
        "model_name_or_path": str(layout.base(preset, env_arch())),
        "data_root": str(layout.data(preset)),
        "resume": "auto",
        "deepspeed": str(layout.zero_configs / "zero2.json") if deepspeed else None,
    }


def _derive(
    layout: RepoLayout, task: str, preset: str, user: set[str], recipe: dict[str, Any]
) -> tuple[dict[str, Any], Callable[[TrainConfig], dict]]:
    """(what was derived, the derivation parse_config applies to options nobody set).

    Args:
        user, recipe: the options the user set, and what the recipe alone gives each (run_naming.py).
    """
    derived: dict[str, Any] = {}

    def derive(cfg: TrainConfig) -> dict[str, Any]:
        arch = env_arch()
        toy = cfg.model.model_name_or_path == str(layout.base(preset, arch))
        out: dict[str, Any] = {}
        own = dict(recipe)  # what the recipe alone gives, its toy-base defaults included
        if toy:  # options the tiny base needs that a real LLaVA does not: the study's validated lr
            out.update(toy_defaults(task, cfg.model.method, cfg.model.model_name_or_path, layout))
            own.update(out)
        if "data_path" not in cfg.given:
            out["data_path"] = task_data_path(cfg.data.data_root, cfg.data.task or task)
        if "output_dir" not in cfg.given:  # named from the parsed config; a given MODEL: no arch suffix
            m, t, settings = cfg.model, cfg.training, settings_hash(cfg, user, own)
            out["output_dir"] = str(
                layout.run_dir(task, m.method, m.lora_r, t.seed, preset == "smoke", arch if toy else "llava", settings)
            )
        derived.update({k: v for k, v in out.items() if k not in cfg.given})
        return out

    return derived, derive


def train_config(
    layout: RepoLayout, task: str, preset: str, cli: list[str], deepspeed: bool = True
) -> tuple[list[str], TrainConfig]:
    """The training argv (what the launched processes parse) and its parse, with precedence resolved.
    The argv is composed once and parsed once; derived options (the run directory) are appended to it.

    Args:
        cli: the user's extra flags (they override the YAML; set environment variables override them).
        deepspeed: add the default ZeRO config (zero_configs/zero2.json) unless the user/ZERO gives one.
    """
    defaults = _launcher_defaults(layout, task, preset, deepspeed)
    config, overrides = layout.recipe_config(task, preset), env_overrides(layout, task, deepspeed)
    argv = compose_argv(cli, config, defaults, overrides)
    user = user_options(cli, overrides)
    derived, derive = _derive(layout, task, preset, user, recipe_values(config, defaults))
    cfg = parse_config(argv, check_paths=False, with_deepspeed=False, derive=derive)  # a typo fails in seconds
    return argv + to_tokens(derived), cfg


def train_argv(layout: RepoLayout, task: str, preset: str, cli: list[str], deepspeed: bool = True) -> list[str]:
    """The training argv of train_config."""
    return train_config(layout, task, preset, cli, deepspeed)[0]


def ensure_defaults(
    layout: RepoLayout, preset: str, model: Optional[Path] = None, data_root: Optional[Path] = None, arch: str = "llava"
) -> tuple[Path, Path]:
    """Build the offline data and base of `preset` when they are the ones used (all builders are cached).

    Args:
        model, data_root: the paths the run uses (default: the preset's); only the preset's own are built.
        arch: `next` also converts the toy base to LLaVA-NeXT (layout.base(preset, "next")).
    """
    model = Path(model) if model is not None else layout.base(preset, arch)
    data_root = Path(data_root) if data_root is not None else layout.data(preset)
    toy = model in (layout.base(preset), layout.base(preset, arch))
    if toy and data_root != layout.data(preset):
        if not (model / "config.json").is_file():
            raise ConfigError(
                f"DATA_ROOT={data_root} is set but MODEL is not: the default MODEL is the toy base ({model}), "
                "which is built from the offline shapes world, not from DATA_ROOT. Set MODEL=<a local LLaVA "
                "directory> to train on your data (or run the recipe once without DATA_ROOT to build the toy base)"
            )
        print(f"[finetune] MODEL not set: training the toy base {model} on DATA_ROOT={data_root}", flush=True)
        return model, data_root
    if data_root == layout.data(preset):
        from data_prep.build_default import main as build_data

        build_data(["--root", str(data_root), "--preset", preset])
    if toy:
        from llava_structlora.toy.build_base import main as build_base

        build_base(["--data", str(data_root), "--out", str(layout.base(preset)), "--preset", preset])
        if model == layout.base(preset, "next"):
            from llava_structlora.toy.build_next import main as build_next

            build_next(["--from", str(layout.base(preset)), "--out", str(model)])
    return model, data_root


def launch_command(argv: list[str], ranks: int, deepspeed: bool = True) -> tuple[list[str], dict[str, str]]:
    """The deepspeed (or torchrun / python) command line and its environment."""
    environ = dict(os.environ)
    import torch

    if not torch.cuda.is_available():
        environ.setdefault("DS_ACCELERATOR", "cpu")
        environ["OMP_NUM_THREADS"] = environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 2) // ranks))
    port = env("MASTER_PORT") or str(_free_port())
    py = sys.executable
    if not deepspeed:
        if ranks == 1:
            return [py, "-m", "llava_structlora.train", *argv], environ
        return [
            py,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={ranks}",
            f"--master_port={port}",
            "-m",
            "llava_structlora.train",
            *argv,
        ], environ
    cmd = [py, "-m", "deepspeed.launcher.runner"]
    if env("HOSTFILE"):
        cmd += ["--hostfile", env("HOSTFILE")]
    cmd += [
        "--num_gpus",
        str(ranks),
        "--master_port",
        port,
        "--no_local_rank",
        "--module",
        "llava_structlora.train",
        *argv,
    ]
    return cmd, environ


def base_eval_cache(layout: RepoLayout, model: Path, task: str, split: str, conv_template: str) -> Path:
    """Base answers are reused across runs, keyed by the base's weights file identity (and prompt format)."""
    weights = sorted(Path(model).glob("*.safetensors"))
    ident = [str(Path(model).resolve())] + [f"{w.name}:{w.stat().st_size}:{w.stat().st_mtime_ns}" for w in weights]
    if conv_template != DEFAULT_CONV_TEMPLATE:  # the default keeps the cache keys of earlier versions
        ident.append(f"conv_template={conv_template}")
    key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:12]
    return layout.eval_cache / f"{task}-{split}-{key}"


def evaluate_both(
    layout: RepoLayout,
    run: RunDir,
    task: str,
    model: Path,
    data_root: Path,
    split: str,
    batch_size: int,
    conv_template: str,
) -> dict[str, dict]:
    """Validation of the trained adapter (metrics.json) and of the base (metrics_base.json, cached),
    both prompted in the run's conversation format."""
    common = dict(conv_template=conv_template)
    return {
        "adapter": run_validation(run, task, model, data_root, split, batch_size, which="adapter", **common),
        "base": run_validation(
            run,
            task,
            model,
            data_root,
            split,
            batch_size,
            which="base",
            work_dir=base_eval_cache(layout, model, task, split, conv_template),
            reuse=True,
            **common,
        ),
    }


def score_line(task: str, split: str, scores: dict) -> str:
    """Adapter vs base on the main metric; VQAv2/GQA under both protocols (official first)."""
    key = EVAL_TASKS[task].main_metric
    adapter, base = scores["adapter"].get(key), scores["base"].get(key)
    # round before the sign: a zero gain prints +0.0000, not -0.0000
    line = f"{task} {split} {key}: adapter {adapter:.4f} | base {base:.4f} | gain {round(adapter - base, 4) + 0.0:+.4f}"
    llava = [(scores[w].get("protocols") or {}).get("llava", {}).get(key) for w in ("adapter", "base")]
    if None not in llava:
        line += (
            f" ({scores['adapter'].get('protocol')} protocol); llava protocol: adapter {llava[0]:.4f} | "
            f"base {llava[1]:.4f}"
        )
    return line


def prepare(
    layout: RepoLayout, task: str, cli: list[str], deepspeed: bool, do_eval: bool = False
) -> tuple[list[str], TrainConfig, bool]:
    """Resolve, build the defaults, validate and check the resume, all before launch: (training argv, parsed
    config, whether the run is already complete). With `do_eval`, the validation's inputs are checked too."""
    preset = env_preset()
    targv, cfg = train_config(layout, task, preset, cli, deepspeed)
    ensure_defaults(layout, preset, Path(cfg.model.model_name_or_path), Path(cfg.data.data_root), env_arch())
    check_files(cfg)  # paths too, still before launch
    if do_eval:
        check_eval_inputs(cfg.data.data_root, validation_tasks(task), cfg.data.eval_split)
    run = RunDir(cfg.training.output_dir)
    resume = resolve_resume(cfg.training.resume, cfg.training.output_dir)  # its pickles verified first, always
    complete = cfg.training.resume == "auto" and run.is_complete()
    if complete or resume:
        try:
            check_resume_identity(run, run_identity(*cfg.args))
        except ResumeMismatchError as e:
            raise ConfigError(str(e)) from e
    return targv, cfg, complete


def main(argv: Optional[list[str]] = None, layout: Optional[RepoLayout] = None) -> int:
    """`--task T [train flags]`; `layout` (default: this checkout) says where configs/artifacts/outputs are.
    Behind the error boundary: any other user error is one message and exit 2 (utils/errors.py)."""
    try:
        return run_main(lambda a: _main(a, layout), argv, "finetune")
    finally:
        release_claims()  # OUTPUT_DIR's lock ends with the recipe (an in-process caller goes on)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m recipes.finetune",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
        epilog="Every option below can also be a YAML key of configs/<task>.yaml.",
    )
    ap.add_argument("--task", required=True, choices=(*TASKS, MIX_TASK))
    ap.add_argument("-h", "--help", action="store_true", help="this text and every training option")
    return ap


def usage() -> str:
    """The recipe's help followed by the training options (python -m llava_structlora.train --help)."""
    return _parser().format_help() + "\ntraining options (flags of the script):\n" + train_parser().format_help()


def _main(argv: Optional[list[str]], layout: Optional[RepoLayout]) -> int:
    if any(a in ("-h", "--help") for a in (sys.argv[1:] if argv is None else argv)):
        print(usage())
        return 0
    args, cli = _parser().parse_known_args(argv)
    layout = layout or RepoLayout.checkout()
    t0 = time.time()
    try:
        deepspeed, do_eval, ranks = not env_flag("NO_DEEPSPEED", False), env_flag("EVAL", True), _num_ranks()
        targv, cfg, complete = prepare(layout, args.task, cli, deepspeed, do_eval)
        margs, dargs, targs = cfg.model, cfg.data, cfg.training
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"[finetune] configuration error: {e}", file=sys.stderr, flush=True)
        return 2
    run = RunDir(targs.output_dir)
    claim_for_process(run.path, "training run", pass_down=True)  # a second run / a merge exits 2; ranks share it
    rc = 0
    if complete:  # a rerun of a finished run is a no-op (nothing launched)
        print(f"[finetune] {already_complete(run)}", flush=True)
    else:
        cmd, environ = launch_command(targv, ranks, deepspeed)
        print(f"[finetune] {shlex.join(cmd)}", flush=True)
        rc = run_launcher(cmd, env=environ, cwd=layout.root)  # SIGTERM reaches every rank, which we wait for
    if rc != 0:
        print(
            f"[finetune] training failed (exit {rc}); complete checkpoints in {run.path} "
            f"(RESUME=auto continues from the newest)",
            file=sys.stderr,
            flush=True,
        )
        return rc
    print(f"[finetune] adapter: {run.deliverable()}", flush=True)
    lines = []  # the scores come last: what a user reads first when the run ends
    if do_eval:
        model, data_root = Path(margs.model_name_or_path), Path(dargs.data_root)
        scores = evaluate_both(
            layout, run, args.task, model, data_root, dargs.eval_split, dargs.eval_batch_size, dargs.conv_template
        )
        print(f"[finetune] scores: {run.metrics('adapter')}, {run.metrics('base')}", flush=True)
        for t in validation_tasks(args.task):
            per = {w: s["tasks"][t] if args.task == MIX_TASK else s for w, s in scores.items()}
            lines.append(f"[finetune] {score_line(t, dargs.eval_split, per)}")
    print(f"[finetune] done in {time.time() - t0:.1f} s: {run.path}", flush=True)
    for line in lines:
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
