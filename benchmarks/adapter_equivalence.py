"""Do two runs of a recipe give the same weights? Compares their exported adapters and StructLoRA states.

    python -m benchmarks.adapter_equivalence --before RUN_A [RUN_A2 ...] --after RUN_B [RUN_B2 ...] [--name N]

For each run pair: the raw sha256 of adapter/adapter_model.safetensors and structlora/structlora_model.safetensors,
and their content digests (llava_structlora.evaluation.fingerprint.safetensors_digest: tensors and sorted
metadata). safetensors writes its metadata map in an arbitrary order, so the raw bytes of identical weights
differ between two saves; the content digest does not. Records docs/results/<name>.json (record_result).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from llava_structlora.evaluation.fingerprint import safetensors_digest
from llava_structlora.rundir import RunDir
from recipes.results import record_result

FILES = {
    "adapter": ("adapter", "adapter_model.safetensors"),
    "structlora": ("structlora", "structlora_model.safetensors"),
}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare(before: Path, after: Path) -> dict:
    out = {"run": RunDir(after).path.name}
    for key, (sub, name) in FILES.items():
        a, b = before / sub / name, after / sub / name
        out[key] = {
            "raw_before": _sha(a),
            "raw_after": _sha(b),
            "digest_before": safetensors_digest(a),
            "digest_after": safetensors_digest(b),
        }
        out[key]["same_weights"] = out[key]["digest_before"] == out[key]["digest_after"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", nargs="+", type=Path, required=True)
    ap.add_argument("--after", nargs="+", type=Path, required=True)
    ap.add_argument("--name", default="refactor_adapter_equivalence")
    ap.add_argument("--title", default="Default recipe: adapter bytes before and after the config refactor (#23)")
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    if len(args.before) != len(args.after):
        ap.error("--before and --after need the same number of runs")
    rows = [compare(a, b) for a, b in zip(args.before, args.after)]
    lines = [
        "| run | file | content digest before | after | same weights | raw sha256 before | after |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for key in FILES:
            d = r[key]
            lines.append(
                f"| {r['run']} | {key} | {d['digest_before'][:16]} | {d['digest_after'][:16]} | {d['same_weights']} | "
                f"{d['raw_before'][:12]} | {d['raw_after'][:12]} |"
            )
    md = "\n".join(lines) + ("\n\n" + args.note if args.note else "")
    command = "python -m benchmarks.adapter_equivalence " + " ".join(sys.argv[1:] if argv is None else argv)
    record_result(args.name, args.title, {"runs": rows}, md, command=command, seeds=[0])
    print(md)
    return 0 if all(r[k]["same_weights"] for r in rows for k in FILES) else 1


if __name__ == "__main__":
    sys.exit(main())
