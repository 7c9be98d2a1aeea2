"""One log line per logging step: the loss is logged at every logging step, diagnostics join its line."""

from __future__ import annotations

import torch

from llava_structlora.rundir import RunDir
from llava_structlora.train.cli import parse_config
from llava_structlora.train.methods import build_model
from llava_structlora.train.trainer import StructLoRATrainer


def _collate(batch):
    return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}


def test_loss_at_every_logging_step_with_diagnostics_on_the_same_line(tiny_base, tmp_path, fake_data):
    flags = ["--output_dir", str(tmp_path), "--model_name_or_path", str(tiny_base), "--max_steps", "5"]
    flags += ["--per_device_train_batch_size", "4", "--logging_steps", "1", "--diagnostics_steps", "2"]
    flags += ["--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true"]
    cfg = parse_config(flags, check_paths=False)
    model = build_model(cfg.model, cfg.structlora, cfg.training.seed, 5, adapter=cfg.adapter)
    trainer = StructLoRATrainer(
        model=model, args=cfg.training, train_dataset=fake_data(), data_collator=_collate, adapter_config=cfg.adapter
    )
    for callback in cfg.spec.callbacks(trainer, RunDir(tmp_path)):
        trainer.add_callback(callback)
    trainer.train()
    steps = [h for h in trainer.state.log_history if "train_runtime" not in h]
    assert [h["step"] for h in steps] == [1, 2, 3, 4, 5], steps  # one entry per logging step, none extra
    assert all("loss" in h for h in steps)
    with_diag = [h["step"] for h in steps if "structlora/open_fraction" in h]
    assert with_diag == [2, 4, 5]  # every 2nd step and the last one, merged into the loss line


def test_deepspeeds_deprecation_warning_is_filtered_once_and_only_it(recwarn):
    import warnings

    from llava_structlora.train.main import _silence_known_deprecations

    _silence_known_deprecations()
    warnings.warn(
        "`torch.distributed.all_gather_into_tensor` is deprecated. Please use `torch.distributed.all_gather_single` "
        "instead.",
        FutureWarning,
        stacklevel=1,
    )
    warnings.warn("some other deprecation", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in recwarn] == ["some other deprecation"]
