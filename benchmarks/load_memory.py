"""Peak host memory (RSS) of loading the base: today's fp32 path vs load_base_model in bf16.

    python benchmarks/load_memory.py [--text-layers 2] [--vision-layers 4] [--full-7b] [--record]

(a) A 7B-width slice: the published llava-hf/llava-1.5-7b-hf config (benchmarks/arch_meta.py) with
fewer layers, random weights, saved like the real checkpoint (fp16 safetensors shards + index) under
artifacts/bench/. (b) ``--full-7b``: the full 32 + 24-layer checkpoint (14 GB in fp16); only run it when
the machine has the memory free (the script refuses below 2.5 x the bf16 bytes available).

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
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PATHS = {
    "fp32_from_pretrained": "today's path: LlavaForConditionalGeneration.from_pretrained(dtype=float32)",
    "bf16_load_base_model": "load_base_model(path, dtype='bf16')",
    "bf16_train_structlora": "train build_model(--bf16 --method structlora): bf16 base + fp32 adapter",
}


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


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(model_dir: Path) -> list[dict]:
    rows = []
    for path in PATHS:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", path, "--model", str(model_dir)],
            capture_output=True,
            text=True,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{path} failed:\n{proc.stderr[-3000:]}")
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
        extra = (r["peak_rss"] - r["rss_before"]) / bf16_bytes
        anon = (r["peak_rss_anon"] - r["anon_before"]) / bf16_bytes
        lines.append(
            f"| {PATHS[r['path']]} | {r['rss_before'] / gib:.2f} | {r['peak_rss'] / gib:.2f} | "
            f"{extra:.2f} | {r['peak_rss_anon'] / gib:.2f} | {anon:.2f} | {r['load_s']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text-layers", type=int, default=2)
    p.add_argument("--vision-layers", type=int, default=4)
    p.add_argument("--full-7b", action="store_true", help="(b): the full 7B-shaped checkpoint (needs ~35 GB free)")
    p.add_argument("--out", default=None, help="checkpoint dir (default artifacts/bench/llava15-7b-slice-...)")
    p.add_argument("--record", action="store_true", help="write docs/results/load_memory.json")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.model)))
        return 0
    text_layers, vision_layers = (32, 24) if args.full_7b else (args.text_layers, args.vision_layers)
    root = Path(__file__).resolve().parents[1]
    out = Path(args.out or root / "artifacts" / "bench" / f"llava15-7b-width-t{text_layers}-v{vision_layers}")
    model_dir = build_slice(out, text_layers, vision_layers)
    import torch
    from safetensors import safe_open

    numel = 0
    for shard in model_dir.glob("*.safetensors"):
        with safe_open(str(shard), framework="pt") as f:
            numel += sum(int(torch.Size(f.get_slice(k).get_shape()).numel()) for k in f.keys())
    bf16_bytes = numel * 2
    if _mem_available() < 2.5 * bf16_bytes:
        need = 2 * bf16_bytes / 2**30
        print(
            f"refusing: {_mem_available() / 2**30:.1f} GiB available, the fp32 path needs ~{need:.1f} GiB plus "
            "headroom (shared machine)",
            file=sys.stderr,
        )
        return 3
    rows = measure(model_dir)
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
            "Host memory while loading the base: fp32 (old) vs bf16 load_base_model (new)",
            {
                "text_layers": text_layers,
                "vision_layers": vision_layers,
                "numel": numel,
                "bf16_bytes": bf16_bytes,
                "rows": rows,
            },
            md,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
