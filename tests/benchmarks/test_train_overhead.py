"""benchmarks/train_overhead.py --quick --grad-ckpt both: checkpointing is turned on the recipe's way
(non-reentrant, for both methods, every decoder/encoder layer), it changes no loss, and a quick run
writes nothing into docs/results. No timing is asserted."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import train_overhead  # noqa: E402
from benchmarks.common import (  # noqa: E402
    build_llava,
    checkpointed_layers,
    make_batch,
    make_pair,
    recipe_checkpointing_kwargs,
    tiny_shape,
)


def test_recipe_checkpointing_is_non_reentrant():
    assert recipe_checkpointing_kwargs() == {"use_reentrant": False}


def test_checkpointing_changes_no_loss_and_checkpoints_every_layer():
    torch.set_num_threads(1)
    base = build_llava(tiny_shape(vision_layers=1, text_layers=2))
    batch = make_batch(base, 2, 8)
    off = make_pair(base, r=4, alpha=8.0, seed=0)
    on = make_pair(base, r=4, alpha=8.0, seed=0, checkpointing=recipe_checkpointing_kwargs())
    for m in off:
        assert checkpointed_layers(off[m].model) == 0 and checkpointed_layers(on[m].model) == 3  # 1 CLIP + 2 Llama
        for step in range(2):  # same RNG stream for both (StructLoRA's gate noise), as in two runs
            losses = []
            for stepper in (off[m], on[m]):
                torch.manual_seed(step)
                losses.append(stepper(batch))
            assert abs(losses[0] - losses[1]) < 1e-5, m


def test_quick_run_measures_both_modes_and_records_nothing(monkeypatch):
    import recipes.results

    monkeypatch.setattr(recipes.results, "record_result", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    args = train_overhead.parse_args(["--quick", "--stacks", "tiny", "--grad-ckpt", "both", "--threads", "1"])
    res = train_overhead.run(args)
    assert set(res) == {"tiny", "tiny+ckpt"}
    assert res["tiny"]["grad_ckpt"] is None and res["tiny+ckpt"]["grad_ckpt"] == {"use_reentrant": False}
    layers = res["tiny+ckpt"]["checkpointed_layers"]
    assert layers["lora"] == layers["structlora"] > 0
    assert "tiny+ckpt: activation checkpointing on" in train_overhead.markdown(res)
    assert train_overhead.main(["--quick", "--stacks", "tiny", "--grad-ckpt", "on", "--threads", "1"]) == 0
