"""The overhead benchmark runs end to end (tiny width; the real numbers come from the CLI)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def test_layer_overhead_benchmark_runs(capsys):
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "layer_overhead.py"
    spec = importlib.util.spec_from_file_location("layer_overhead", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--width", "64", "--blocks", "3", "--tokens", "8", "--repeats", "2", "--warmup", "1"])
    assert res["lora_s"] > 0 and res["structlora_s"] > 0 and res["mean_stacked_rank"] > 8
    assert "StructLoRA/LoRA" in capsys.readouterr().out
