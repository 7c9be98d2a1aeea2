"""Build times of the embedded default (shapes world + tiny base) and the base's quality probe.

    python benchmarks/base_build.py [--presets smoke default] [--probe-n 500]

Each preset is built from scratch into a temp dir (no cache), timed by wall clock; the default
base is then probed (accuracy per question type vs the image-shuffled and majority-answer
references, and the untuned downstream scores) and everything is recorded in docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from data_prep.build_default import build_default
from llava_structlora.toy.build_base import build_base
from llava_structlora.toy.probe import probe
from recipes.results import record_result


def timed(fn, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def probe_table(rep: dict) -> str:
    pre = rep["pretrain"]
    rows = ["| pretrain val question type | base | images shuffled | majority answer |", "|---|---|---|---|"]
    for k in sorted(pre["accuracy"]):
        rows.append(f"| {k} | {pre['accuracy'][k]:.3f} | {pre['shuffled'][k]:.3f} | {pre['chance'][k]:.3f} |")
    rows += ["", "| untuned base, downstream val (quick probe, exact match / CIDEr-D) | score |", "|---|---|"]
    for task in ("vqav2", "gqa"):
        for k, v in sorted(rep[task].get("exact_match", {}).items()):
            rows.append(f"| {task} {k} | {v:.3f} |")
    for k, v in sorted(rep["coco"].items()):
        if isinstance(v, (int, float)) and k != "n":
            rows.append(f"| coco {k} | {v:.3f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=["smoke", "default"])
    ap.add_argument("--probe-n", type=int, default=500)
    args = ap.parse_args()
    times: dict[str, dict[str, float]] = {}
    report = None
    with tempfile.TemporaryDirectory(prefix="base_build_") as tmp:
        for preset in args.presets:
            data, base = Path(tmp) / f"data-{preset}", Path(tmp) / f"base-{preset}"
            times[preset] = {
                "data_s": timed(build_default, data, preset=preset),
                "base_s": timed(build_base, data, base, preset=preset, force=True),
            }
            print(preset, times[preset], flush=True)
            if preset == "default":
                report = probe(base, data, n=args.probe_n)
    rows = ["| preset | shapes world build (s) | base build (s) | budget |", "|---|---|---|---|"]
    budget = {"smoke": "<= 30 s", "default": "<= 600 s"}
    for p, t in times.items():
        rows.append(f"| {p} | {t['data_s']:.1f} | {t['base_s']:.1f} | {budget.get(p, '')} |")
    md = "\n".join(rows)
    if report is not None:
        md += "\n\nQuality of the default base (pretraining val split, first "
        md += f"{args.probe_n} questions per split):\n\n" + probe_table(report)
    record_result("base_build", "Embedded default: build times and base quality", {"times": times, "probe": report}, md)


if __name__ == "__main__":
    main()
