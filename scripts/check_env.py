"""Exit 0 when the running interpreter satisfies requirements.txt, else list what is missing.

Used by scripts/setup.sh to decide whether the active Python can be used as is
or whether ./.venv has to be created. Standard library only, so it runs anywhere.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path


def unmet(requirements: Path) -> list[str]:
    missing = []
    for raw in requirements.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(==\s*([^\s;]+))?", line)
        if not m:
            continue
        name, pinned = m.group(1), m.group(3)
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(f"{name} (not installed)")
            continue
        if pinned and have.split("+", 1)[0] != pinned:
            missing.append(f"{name} (have {have}, want {pinned})")
    return missing


if __name__ == "__main__":
    req = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "requirements.txt")
    bad = unmet(req)
    for b in bad:
        print(b)
    sys.exit(1 if bad else 0)
