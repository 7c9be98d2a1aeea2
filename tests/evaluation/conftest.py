"""The smoke shapes world + smoke toy base (the colleagues' builders), and a perturbed copy of
the base whose greedy answers vary from question to question (the 20-step smoke base answers
almost everything the same way, which would make equality tests vacuous)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> dict[str, Path]:
    from data_prep.build_default import build_default
    from llava_structlora.toy.build_base import build_base

    root = tmp_path_factory.mktemp("evalworld")
    data, base = root / "data", root / "base"
    build_default(data, "smoke")
    build_base(data, base, "smoke")
    torch.set_num_threads(1)
    noisy = root / "noisy"
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, w in model.named_parameters():
            if "language_model" in name or "lm_head" in name:
                w.add_(torch.randn(w.shape, generator=gen) * w.std() * 0.5)
    model.save_pretrained(noisy)
    AutoProcessor.from_pretrained(base).save_pretrained(noisy)
    return {"data": data, "base": base, "noisy": noisy}
