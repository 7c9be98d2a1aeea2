"""Build times of the embedded default (shapes world + tiny base) and the base's quality probe.

    python benchmarks/base_build.py [--presets smoke default] [--probe-n 500]

Each preset is built from scratch into a temp dir (no cache, `force`: the shipped copy is not used), timed
by wall clock, and its files' sha256 compared with the base the repository ships
(llava_structlora/toy/prebuilt/<preset>/SHA256SUMS: the build is deterministic, so they must be equal;
tests/toy/test_prebuilt.py checks the recorded default hash against the shipped file). Then the time
`build_base` takes to install the shipped copy instead (what a first run pays). The default base is
probed (accuracy per question type vs the image-shuffled and majority-answer references, and the untuned
downstream scores) and everything is recorded in docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from data_prep.build_default import build_default
from llava_structlora.toy import prebuilt
from llava_structlora.toy.build_base import STAMP, build_base
from llava_structlora.toy.probe import probe
from llava_structlora.utils.io import sha256_file
from recipes.results import record_result


def timed(fn, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def compare_with_shipped(base: Path, preset: str) -> dict:
    """The from-scratch build's key and weights hash, and which files differ from the shipped copy."""
    sums = (prebuilt.shipped_dir(preset) / prebuilt.SUMS).read_text().splitlines()
    shipped = {name: digest for digest, name in (line.split("  ", 1) for line in sums)}
    differing = sorted(n for n, d in shipped.items() if n != STAMP and sha256_file(base / n) != d)
    return {
        "key": json.loads((base / STAMP).read_text())["key"],
        "shipped_key": prebuilt.shipped_key(preset),
        "weights_sha256": sha256_file(base / "model.safetensors"),
        "identical_to_shipped": not differing,
        "differing": differing,
    }


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
    rebuild: dict[str, dict] = {}
    report = None
    with tempfile.TemporaryDirectory(prefix="base_build_") as tmp:
        for preset in args.presets:
            data, base = Path(tmp) / f"data-{preset}", Path(tmp) / f"base-{preset}"
            times[preset] = {
                "data_s": timed(build_default, data, preset=preset),
                "base_s": timed(build_base, data, base, preset=preset, force=True),
                "install_shipped_s": timed(build_base, data, Path(tmp) / f"shipped-{preset}", preset=preset),
            }
            rebuild[preset] = compare_with_shipped(base, preset)
            print(preset, times[preset], rebuild[preset], flush=True)
            if preset == "default":
                report = probe(base, data, n=args.probe_n)
    rows = [
        "| preset | shapes world build (s) | base pretraining from scratch (s) | installing the shipped base (s) | "
        "rebuild = shipped, byte for byte |",
        "|---|---|---|---|---|",
    ]
    for p, t in times.items():
        r = rebuild[p]
        same = "yes" if r["identical_to_shipped"] else "NO: " + ", ".join(r["differing"])
        rows.append(
            f"| {p} | {t['data_s']:.1f} | {t['base_s']:.1f} | {t['install_shipped_s']:.1f} | "
            f"{same} (weights sha256 {r['weights_sha256'][:12]}) |"
        )
    md = "\n".join(rows)
    if report is not None:
        md += "\n\nQuality of the default base (pretraining val split, first "
        md += f"{args.probe_n} questions per split):\n\n" + probe_table(report)
    data = {"times": times, "rebuild": rebuild, "probe": report}
    record_result("base_build", "Embedded default: build times, shipped base, base quality", data, md)


if __name__ == "__main__":
    main()
