"""benchmarks/load_memory.py's full-7B writer: a checkpoint written shard by shard from meta-device
shapes loads strictly (no missing or re-initialised tensor) through load_base_model, and the
measurement records a path it cannot run as not run, never as a number."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.load_memory import NEED_X_BF16, full_7b_config, measure, table, write_random_checkpoint  # noqa: E402


def _small_config():
    cfg = full_7b_config()
    cfg.text_config.update({"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128})
    cfg.text_config.update({"num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 32064})
    cfg.vision_config.update({"num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 64})
    cfg.vision_config.update({"num_attention_heads": 2, "image_size": 28})
    return cfg


def test_full_7b_config_is_the_published_shape():
    cfg = full_7b_config()
    assert (cfg.text_config.num_hidden_layers, cfg.vision_config.num_hidden_layers) == (32, 24)
    assert cfg.text_config.hidden_size == 4096 and cfg.text_config.intermediate_size == 11008


def test_sharded_random_checkpoint_loads_strictly(tmp_path):
    from llava_structlora.modeling import load_base_model

    numel = write_random_checkpoint(_small_config(), tmp_path, "float16", shard_bytes=2 << 20)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1 and index["metadata"]["total_size"] == 2 * numel
    model = load_base_model(tmp_path, dtype="bf16")  # raises on a missing or unexpected tensor
    assert sum(p.numel() for p in model.parameters()) == numel
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    norm = dict(model.named_parameters())
    assert all(torch.all(v == 1) for k, v in norm.items() if k.endswith("norm.weight"))


def test_a_path_that_cannot_run_is_recorded_as_not_run(tmp_path):
    rows = measure(tmp_path, bf16_bytes=1 << 50, skip={"fp32_from_pretrained": "does not fit"})
    assert [r["path"] for r in rows] == list(NEED_X_BF16)
    assert rows[0]["not_run"] == "does not fit"
    assert all(r["not_run"].startswith("refused") for r in rows[1:])  # 1 PiB of weights never fits
    md = table(rows, 1 << 50, "x")
    assert md.count("not run:") == 3 and "peak_rss" not in md
