"""The benchmark harness measures what it claims (fairness preconditions, memory accounting).

No timing is asserted here: benchmarks are run by benchmarks/run_all.sh, not by the test suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.common import (  # noqa: E402
    METHODS,
    Stepper,
    adapted_count,
    build_llava,
    make_batch,
    make_pair,
    paired_ratio,
    step_peak_bytes,
    tiny_shape,
)


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return build_llava(tiny_shape(vision_layers=1, text_layers=2))


def test_both_methods_adapt_the_same_modules_and_train(tiny):
    batch = make_batch(tiny, 2, 8)
    assert int((batch["input_ids"] == tiny.config.image_token_id).sum()) == 2 * 9
    pair = make_pair(tiny, r=4, alpha=8.0, seed=0)
    assert [adapted_count(pair[m].model) for m in METHODS] == [6, 6]  # (1 + 2 blocks) x {q, v}
    for m in METHODS:
        before = [p.detach().clone() for p in pair[m].model.parameters() if p.requires_grad]
        loss = pair[m](batch)
        after = [p for p in pair[m].model.parameters() if p.requires_grad]
        assert torch.isfinite(torch.tensor(loss)) and any(not torch.equal(a, b) for a, b in zip(after, before))


def test_peak_memory_counts_state_and_step_allocations(tiny):
    pair = make_pair(tiny, r=4, alpha=8.0, seed=0)
    mem = step_peak_bytes(pair["lora"], make_batch(tiny, 2, 8))
    frozen = sum(p.numel() * 4 for p in pair["lora"].model.parameters() if not p.requires_grad)
    trainable = sum(p.numel() * 4 for p in pair["lora"].model.parameters() if p.requires_grad)
    assert mem["frozen"] == frozen and mem["trainable"] == trainable
    assert mem["optimizer"] >= 2 * trainable  # AdamW: exp_avg + exp_avg_sq
    assert mem["step_peak"] > 0 and mem["total_peak"] == sum(
        mem[k] for k in ("frozen", "trainable", "buffers", "optimizer", "step_peak")
    )


def test_step_peak_sees_a_known_allocation():
    class Big(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(4))

        def forward(self, x, labels=None):
            big = torch.ones(1 << 20) * self.w.sum()  # 4 MiB alive during the step
            return type("Out", (), {"loss": big.mean()})()

    stepper = Stepper(Big(), "lora")
    mem = step_peak_bytes(stepper, {"x": torch.zeros(1)})
    assert mem["step_peak"] >= 4 << 20


def test_paired_ratio_is_median_of_per_repeat_ratios():
    r = paired_ratio([2.0, 3.0, 10.0], [1.0, 3.0, 4.0])
    assert r["median_ratio"] == 2.0 and r["min_ratio"] == 1.0 and r["max_ratio"] == 2.5


def test_quick_and_no_record_runs_never_reach_the_results(monkeypatch):
    import argparse

    import recipes.results
    from benchmarks.common import record_unless_quick

    calls = []
    monkeypatch.setattr(recipes.results, "record_result", lambda *a, **kw: calls.append((a, kw)))
    for quick, no_record in ((True, False), (False, True), (True, True)):
        record_unless_quick(argparse.Namespace(quick=quick, no_record=no_record, seed=3), "n", "t", {}, "md")
    assert calls == []
    record_unless_quick(argparse.Namespace(quick=False, no_record=False, seed=3), "n", "t", {"x": 1}, "md")
    assert calls == [(("n", "t", {"x": 1}, "md"), {"seeds": [3]})]
