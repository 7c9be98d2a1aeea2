"""benchmarks/gpu_7b.py imports and runs its CPU dry path (tiny shapes); the real run needs a GPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def test_dry_run_writes_the_results_json(tmp_path):
    from benchmarks import gpu_7b

    out = tmp_path / "gpu_7b.json"
    assert gpu_7b.main(["--dry-run", "--out", str(out), "--attn", "sdpa,flash_attention_2"]) == 0
    res = json.loads(out.read_text())
    assert set(res["backends"]) == {"sdpa"} | ({"flash_attention_2"} - set(res["skipped_backends"]))
    sdpa = res["backends"]["sdpa"]
    assert set(sdpa["tokens_per_s"]) == {"lora", "structlora"} and all(v > 0 for v in sdpa["tokens_per_s"].values())
    assert res["args"]["no_checkpointing"] is False and res["device"].startswith("cpu")
