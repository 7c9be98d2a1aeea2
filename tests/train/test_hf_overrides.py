"""The private Trainer methods hf_overrides.py overrides still exist in the installed transformers with
the parameters the overrides use (an upgrade that renames or re-signs one fails here)."""

from __future__ import annotations

import inspect

import transformers

from llava_structlora.train.hf_overrides import OVERRIDDEN, TARGET_TRANSFORMERS, TrainerOverrides
from llava_structlora.train.trainer import StructLoRATrainer


def test_every_private_override_matches_the_installed_trainer():
    for name in OVERRIDDEN:
        stock = getattr(transformers.Trainer, name, None)
        assert stock is not None, f"transformers {transformers.__version__} has no Trainer.{name}"
        ours = inspect.signature(getattr(TrainerOverrides, name))
        assert list(ours.parameters) == list(inspect.signature(stock).parameters), name


def test_overrides_live_in_one_place_and_name_their_version():
    assert transformers.__version__ == TARGET_TRANSFORMERS, "re-check hf_overrides.py against the new Trainer"
    private = {
        n
        for n, v in vars(StructLoRATrainer).items()
        if n.startswith("_") and not n.startswith("__") and callable(v) and hasattr(transformers.Trainer, n)
    }
    assert not private, f"private Trainer overrides outside hf_overrides.py: {private}"
    assert set(OVERRIDDEN) == {
        n for n in vars(TrainerOverrides) if not n.startswith("__") and hasattr(transformers.Trainer, n)
    }
