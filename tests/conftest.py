"""Shared fixtures. `smoke`: the smoke shapes world + smoke toy base (the colleagues' builders), and a randomly
initialized model with the base's config and processor ("random"): its greedy answers differ
from question to question and never stop early, so equality tests compare real, varied text
(the 20-step smoke base answers almost everything the same way)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test dirs import shared helpers as `tests.<module>`


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> dict[str, Path]:
    from transformers import AutoConfig, AutoProcessor, LlavaForConditionalGeneration

    from data_prep.build_default import build_default
    from llava_structlora.toy.build_base import build_base

    root = tmp_path_factory.mktemp("evalworld")
    data, base, rand = root / "data", root / "base", root / "random"
    build_default(data, "smoke")
    build_base(data, base, "smoke")
    torch.set_num_threads(1)
    cfg = AutoConfig.from_pretrained(base)
    for c in (cfg, cfg.text_config, cfg.vision_config):
        c.initializer_range = 0.1  # 0.02 gives near-constant outputs
    torch.manual_seed(0)
    LlavaForConditionalGeneration(cfg).save_pretrained(rand)
    AutoProcessor.from_pretrained(base).save_pretrained(rand)
    return {"data": data, "base": base, "random": rand}


def pytest_collection_modifyitems(config, items) -> None:
    """Files holding end-to-end (`slow`) tests run first. scripts/test.sh runs `pytest -n 2 --dist loadfile`:
    started last, the long files would form a tail on one worker while the other idles. Stable sort: the order
    within each group, and within each file, is kept."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
