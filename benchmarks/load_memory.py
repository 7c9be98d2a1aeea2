"""Peak host memory (RSS) of loading the base: today's fp32 path vs load_base_model in bf16.

    python benchmarks/load_memory.py [--text-layers 2] [--vision-layers 4] [--full-7b] [--record]

(a) A 7B-width slice: the published llava-hf/llava-1.5-7b-hf config (benchmarks/arch_meta.py) with
fewer layers, random weights, saved like the real checkpoint (fp16 safetensors shards + index) under
artifacts/bench/. (b) ``--full-7b``: the full 32 + 24-layer checkpoint (7.06 B parameters, 14 GB in
fp16), written shard by shard from meta-device shapes (``write_random_checkpoint``: no model, no fp32
copy; peak = one shard) into a temporary directory that is deleted afterwards. There only the half-
precision paths run: the fp32 path needs ~2 x 14 GB and is recorded as not run, with the reason.
The script refuses to start a path when MemAvailable is below what that path needs plus headroom.

Each path loads in a fresh child process, so every peak is its own. We report, per path: the RSS right
before loading (the fixed overhead: Python, torch, transformers), the peak RSS during the load
(``VmHWM`` after resetting it through /proc/self/clear_refs), and the peak of the *anonymous* RSS
(``RssAnon``, sampled every 5 ms: the tensors we own; file-backed pages of the mmapped safetensors
shards are page cache the kernel can drop). Goal: peak - overhead <= 1.25 x bf16 weight bytes.
The training paths (`--method structlora` with `--bf16`) also apply StructLoRA in the child.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PATHS = {
    "fp32_from_pretrained": "today's path: LlavaForConditionalGeneration.from_pretrained(dtype=float32)",
    "bf16_load_base_model": "load_base_model(path, dtype='bf16')",
    "bf16_train_structlora": "train build_model(--bf16 --method structlora): bf16 base + fp32 adapter",
}
# host bytes a path needs, in units of the bf16 weight bytes (fp32: the fp32 copy + file pages)
NEED_X_BF16 = {"fp32_from_pretrained": 2.5, "bf16_load_base_model": 1.3, "bf16_train_structlora": 1.3}


def _status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, val = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(val.split()[0]) * 1024
    return out


class _Sampler(threading.Thread):
    """Max of RssAnon / VmRSS seen while the load runs (5 ms period)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = {"RssAnon": 0, "VmRSS": 0}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            s = _status()
            for k in self.peak:
                self.peak[k] = max(self.peak[k], s[k])
            time.sleep(0.005)


def _load(path: str, model_dir: str):
    import torch

    if path == "fp32_from_pretrained":
        from transformers import LlavaForConditionalGeneration

        return LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    if path == "bf16_load_base_model":
        from llava_structlora.modeling import load_base_model

        return load_base_model(model_dir, dtype="bf16")
    from llava_structlora.train.config import parse_args
    from llava_structlora.train.methods import base_load_dtype, build_model

    m, _, s, t = parse_args(
        ["--output_dir", "/tmp/unused", "--model_name_or_path", model_dir, "--bf16", "true", "--use_cpu", "true"],
        check_paths=False,
    )
    return build_model(m, s, t.seed, total_steps=100, dtype=base_load_dtype(m, t))


def child(path: str, model_dir: str) -> dict:
    """Runs in a fresh process: import, reset the peak, load, report."""
    import torch  # noqa: F401  (imports belong to the fixed overhead)
    import transformers  # noqa: F401

    import llava_structlora.modeling  # noqa: F401
    import llava_structlora.train.methods  # noqa: F401

    before = _status()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    sampler = _Sampler()
    sampler.start()
    t0 = time.time()
    model = _load(path, model_dir)
    secs = time.time() - t0
    sampler.stop.set()
    sampler.join()
    after = _status()
    dtypes: dict[str, int] = {}
    for p in model.parameters():
        dtypes[str(p.dtype)] = dtypes.get(str(p.dtype), 0) + p.numel() * p.element_size()
    return {
        "path": path,
        "rss_before": before["VmRSS"],
        "anon_before": before["RssAnon"],
        "peak_rss": after["VmHWM"],
        "peak_rss_anon": sampler.peak["RssAnon"],
        "rss_after": after["VmRSS"],
        "load_s": round(secs, 1),
        "param_bytes_by_dtype": dtypes,
    }


def build_slice(out: Path, text_layers: int, vision_layers: int) -> Path:
    """Random 7B-width LLaVA-1.5 (published config, fewer layers) saved as fp16 safetensors shards."""
    import torch
    from transformers import AutoConfig, LlavaForConditionalGeneration

    from benchmarks.arch_meta import PUBLISHED

    stamp = out / "slice.json"
    want = {"text_layers": text_layers, "vision_layers": vision_layers, "dtype": "float16"}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return out
    cfg_dict = json.loads(json.dumps(PUBLISHED["llava-hf/llava-1.5-7b-hf"]))
    cfg_dict["text_config"]["num_hidden_layers"] = text_layers
    cfg_dict["vision_config"]["num_hidden_layers"] = vision_layers
    cfg = AutoConfig.for_model(**cfg_dict)
    torch.set_default_dtype(torch.float16)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(cfg)
    torch.set_default_dtype(torch.float32)
    model = model.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0 if "norm" in name else 0.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
    model.config.dtype = torch.float16
    model.save_pretrained(out, max_shard_size="500MB")
    del model
    stamp.write_text(json.dumps(want))
    return out


def _fill(name: str, shape: tuple[int, ...], dtype: Any, gen: Any) -> Any:
    """The slice's init: norms 1, other 1-d tensors (biases) 0, matrices N(0, 0.02)."""
    import torch

    t = torch.empty(shape, dtype=dtype)
    if t.dim() == 1:
        return t.fill_(1.0 if "norm" in name else 0.0)
    return t.normal_(0.0, 0.02, generator=gen)


def write_random_checkpoint(cfg: Any, out: Path, dtype: str = "float16", shard_bytes: int = 2 << 30) -> int:
    """Random checkpoint of ``cfg`` as safetensors shards + index, one shard in memory at a time.

    The state-dict names and shapes come from the model built on the meta device, so no full
    model (and no fp32 copy) ever exists; returns the parameter count.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import LlavaForConditionalGeneration

    torch_dtype = getattr(torch, dtype)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(cfg)
    shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    del model
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    esize = torch.empty((), dtype=torch_dtype).element_size()
    for name, shape in shapes:
        n = esize * int(torch.Size(shape).numel())
        if groups[-1] and size + n > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append((name, shape))
        size += n
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    weight_map, total, numel = {}, 0, 0
    for i, group in enumerate(groups, 1):
        fname = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        shard = {name: _fill(name, shape, torch_dtype, gen) for name, shape in group}
        save_file(shard, str(out / fname), metadata={"format": "pt"})
        for name, t in shard.items():
            weight_map[name] = fname
            total += t.numel() * t.element_size()
            numel += t.numel()
        del shard
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    cfg.dtype = torch_dtype
    cfg.save_pretrained(out)
    return numel


def full_7b_config() -> Any:
    """The published llava-hf/llava-1.5-7b-hf config (benchmarks/arch_meta.py)."""
    from benchmarks.arch_meta import published_config

    return published_config("llava-hf/llava-1.5-7b-hf")


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(model_dir: Path, bf16_bytes: int, skip: dict[str, str] | None = None) -> list[dict]:
    """One fresh child per path; ``skip`` maps a path to why it is not run (recorded as such)."""
    rows = []
    for path in PATHS:
        if path in (skip or {}):
            rows.append({"path": path, "not_run": skip[path]})
            continue
        need = NEED_X_BF16[path] * bf16_bytes + (1 << 30)
        if _mem_available() < need:
            rows.append(
                {
                    "path": path,
                    "not_run": f"refused: {_mem_available() / 2**30:.1f} GiB available, needs ~{need / 2**30:.1f} GiB",
                }
            )
            continue
        proc = subprocess.run(
            [sys.executable, __file__, "--child", path, "--model", str(model_dir)],
            capture_output=True,
            text=True,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
        if proc.returncode != 0:  # recorded as it happened (e.g. -9: killed for memory)
            tail = proc.stderr.strip().splitlines()[-1:] or [""]
            rows.append({"path": path, "not_run": f"failed: exit {proc.returncode}: {tail[0][:200]}"})
            print(proc.stderr[-3000:], file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return rows


def table(rows: list[dict], bf16_bytes: int, label: str) -> str:
    gib = 2**30
    lines = [
        f"**{label}**: {bf16_bytes / gib:.2f} GiB of weights in bf16. Overhead = RSS before the load "
        "(Python + torch + transformers). Goal: peak - overhead <= 1.25 x bf16 bytes.",
        "",
        "| path | overhead GiB | peak RSS GiB | (peak - overhead) / bf16 bytes | peak anon RSS GiB "
        "| (anon peak - anon before) / bf16 bytes | load s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "not_run" in r:
            lines.append(f"| {PATHS[r['path']]} | not run: {r['not_run']} | | | | | |")
            continue
        extra = (r["peak_rss"] - r["rss_before"]) / bf16_bytes
        anon = (r["peak_rss_anon"] - r["anon_before"]) / bf16_bytes
        lines.append(
            f"| {PATHS[r['path']]} | {r['rss_before'] / gib:.2f} | {r['peak_rss'] / gib:.2f} | "
            f"{extra:.2f} | {r['peak_rss_anon'] / gib:.2f} | {anon:.2f} | {r['load_s']} |"
        )
    return "\n".join(lines)


def _count(model_dir: Path) -> int:
    import torch
    from safetensors import safe_open

    numel = 0
    for shard in model_dir.glob("*.safetensors"):
        with safe_open(str(shard), framework="pt") as f:
            numel += sum(int(torch.Size(f.get_slice(k).get_shape()).numel()) for k in f.keys())
    return numel


def run_full_7b(root: Path, dtype: str, shard_gb: float, keep: bool) -> tuple[list[dict], int, str]:
    """(b): write the full 7B-shaped checkpoint to a temp dir, measure the half-precision paths, delete."""
    bench = root / "artifacts" / "bench"
    bench.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="llava15-7b-full-", dir=bench))
    try:
        t0 = time.time()
        numel = write_random_checkpoint(full_7b_config(), tmp, dtype, int(shard_gb * 2**30))
        print(f"wrote {numel / 1e9:.2f} B parameters to {tmp} in {time.time() - t0:.0f} s", file=sys.stderr)
        bf16_bytes = numel * 2
        why = (
            f"needs the fp32 weights ({2 * bf16_bytes / 2**30:.1f} GiB) plus the checkpoint's file pages, "
            f"more than this machine's {_mem_total() / 2**30:.1f} GiB RAM"
        )
        rows = measure(tmp, bf16_bytes, skip={"fp32_from_pretrained": why})
        label = (
            f"Full LLaVA-1.5-7B shape (32 LM + 24 vision layers), {numel / 1e9:.2f} B parameters, "
            f"{dtype} safetensors shards of {shard_gb:g} GiB"
        )
        return rows, numel, label
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _mem_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text-layers", type=int, default=2)
    p.add_argument("--vision-layers", type=int, default=4)
    p.add_argument("--full-7b", action="store_true", help="(b): the full 7B-shaped checkpoint (~17 GiB free needed)")
    p.add_argument("--shard-dtype", default="float16", choices=["float16", "bfloat16"], help="--full-7b shards")
    p.add_argument("--shard-gb", type=float, default=2.0, help="--full-7b shard size (GiB)")
    p.add_argument("--keep", action="store_true", help="--full-7b: keep the temporary checkpoint")
    p.add_argument("--out", default=None, help="checkpoint dir (default artifacts/bench/llava15-7b-slice-...)")
    p.add_argument("--record", action="store_true", help="write docs/results/load_memory[_full7b].json")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.model)))
        return 0
    root = Path(__file__).resolve().parents[1]
    if args.full_7b:
        text_layers, vision_layers = 32, 24
        rows, numel, label = run_full_7b(root, args.shard_dtype, args.shard_gb, args.keep)
        bf16_bytes = numel * 2
    else:
        text_layers, vision_layers = args.text_layers, args.vision_layers
        out = Path(args.out or root / "artifacts" / "bench" / f"llava15-7b-width-t{text_layers}-v{vision_layers}")
        model_dir = build_slice(out, text_layers, vision_layers)
        numel = _count(model_dir)
        bf16_bytes = numel * 2
        rows = measure(model_dir, bf16_bytes)
        label = (
            f"LLaVA-1.5-7B widths, {text_layers} LM + {vision_layers} vision layers, {numel / 1e9:.2f} B "
            f"parameters, fp16 safetensors shards of 500 MB"
        )
    md = table(rows, bf16_bytes, label)
    print(md)
    if args.record:
        from recipes.results import record_result

        record_result(
            "load_memory" + ("_full7b" if args.full_7b else ""),
            "Host memory while loading the base: fp32 (old) vs bf16 load_base_model (new)"
            + (", full 7B shape" if args.full_7b else ""),
            {
                "text_layers": text_layers,
                "vision_layers": vision_layers,
                "numel": numel,
                "bf16_bytes": bf16_bytes,
                "mem_total": _mem_total(),
                "rows": rows,
            },
            md,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
