"""The shipped tiny bases: `build_base`'s own output, committed so that a first run does not pretrain.

    python -m llava_structlora.toy.prebuilt --from artifacts/base/default --preset default   # refresh the copy

Pretraining the `default` base is 2700 steps (about 5-6 min on 2 cores, docs/base.md) and the result is
deterministic: the same code, preset and data give the same weights, byte for byte (checked for the smoke
preset by tests/toy/test_prebuilt.py on every run, for the default by `benchmarks/base_build.py`, whose
from-scratch rebuild's hash is recorded next to the shipped one). So `build_base` installs the shipped copy
when its build key (preset + BUILD_VERSION + sha256 of every input JSON, build_base.build_key) equals the key
of the data at hand, and pretrains otherwise (other data, another preset, a code change that bumped
BUILD_VERSION, `--force`). The folder `prebuilt/<preset>/` holds the files `build_base` wrote, a stamp without
the build machine's paths, and SHA256SUMS: a shipped file that does not match it is an error, never installed.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

from llava_structlora.utils.errors import UserError, run_main
from llava_structlora.utils.io import atomic_directory, atomic_write_json, atomic_write_text, sha256_file

logger = logging.getLogger("llava_structlora.toy.prebuilt")
ROOT = Path(__file__).resolve().parent / "prebuilt"
SUMS = "SHA256SUMS"
STAMP = "build_stamp.json"  # = build_base.STAMP (not imported: build_base imports this module)
_MACHINE_KEYS = ("data_root", "inputs")  # where the build ran: not shipped


def shipped_dir(preset: str, root: Path = ROOT) -> Path:
    return root / preset


def shipped_key(preset: str, root: Path = ROOT) -> str | None:
    """Build key of the shipped `preset` base, None when none is shipped."""
    stamp = shipped_dir(preset, root) / STAMP
    return json.loads(stamp.read_text()).get("key") if stamp.is_file() else None


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SUMS)


def verify(folder: Path) -> None:
    """Raise UserError naming every shipped file whose sha256 differs from SHA256SUMS (or is missing)."""
    sums = folder / SUMS
    if not sums.is_file():
        raise UserError(f"{folder}: no {SUMS}; restore the shipped base (git checkout {folder}) or rebuild (--force)")
    expected = dict(reversed(line.split("  ", 1)) for line in sums.read_text().splitlines() if line.strip())
    bad = [n for n, digest in expected.items() if not (folder / n).is_file() or sha256_file(folder / n) != digest]
    if bad:
        raise UserError(
            f"{folder}: shipped base files differ from {SUMS}: {', '.join(sorted(bad))}; restore them "
            f"(git checkout {folder}) or rebuild the base with --force"
        )


def install(out: Path, preset: str, key: str, stamp_extra: dict[str, Any], root: Path = ROOT) -> bool:
    """Copy the shipped `preset` base into `out` (atomically) when it was built with `key`; False if not."""
    src = shipped_dir(preset, root)
    if shipped_key(preset, root) != key:
        return False
    verify(src)
    with atomic_directory(out) as tmp:
        for f in _files(src):
            dst = tmp / f.relative_to(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if f.name != STAMP:
                shutil.copyfile(f, dst)
        stamp = json.loads((src / STAMP).read_text())
        atomic_write_json(tmp / STAMP, {**stamp, **stamp_extra, "prebuilt": str(src.relative_to(root.parent))})
    logger.info("%s: installed the shipped %s base (key %s) instead of pretraining", out, preset, key)
    return True


def ship(base: Path, preset: str, root: Path = ROOT) -> Path:
    """Replace the shipped `preset` base with the `build_base` output in `base` (maintainers)."""
    stamp = json.loads((base / STAMP).read_text())
    if (stamp.get("preset") or {}).get("name") != preset:
        raise UserError(f"{base / STAMP}: preset {stamp.get('preset', {}).get('name')!r}, not {preset!r}")
    if stamp.get("prebuilt"):
        raise UserError(f"{base}: itself a copy of the shipped base; ship a fresh build_base output (--force)")
    dst = shipped_dir(preset, root)
    with atomic_directory(dst) as tmp:
        for f in _files(base):
            if f.name != STAMP:
                (tmp / f.relative_to(base)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, tmp / f.relative_to(base))
        atomic_write_json(tmp / STAMP, {k: v for k, v in stamp.items() if k not in _MACHINE_KEYS})
        lines = [f"{sha256_file(f)}  {f.relative_to(tmp).as_posix()}" for f in _files(tmp)]
        atomic_write_text(tmp / SUMS, "\n".join(lines) + "\n")
    return dst


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="base", required=True, help="a base directory build_base wrote")
    ap.add_argument("--preset", required=True, choices=["default", "smoke"])
    args = ap.parse_args(argv)
    print(f"shipped {ship(Path(args.base), args.preset)}")


if __name__ == "__main__":
    sys.exit(run_main(main, None, "prebuilt"))
