"""DeepSpeed ZeRO-3 for the adapter methods: the frozen base is partitioned, the trainable tensors stay whole.

Why this is needed. ZeRO-3 gathers a parameter only around the forward (and backward) of the module
that owns it and frees it afterwards. StructLoRA reads parameters outside their owners: the
coordinator reads every layer's factors and gates once per forward, in a pre-hook on the top model,
and each adapted layer multiplies by its smoothing neighbours' factors (eq. A). Under plain ZeRO-3
those reads would see empty partitions.

What we do. After the engine is built (and after a resume loaded its partitions) every *trainable*
parameter is marked ``ds_persist`` and added to the optimizer's ``persistent_parameters``: DeepSpeed
then never frees it, and re-gathers it after every optimizer step (``DeepSpeedZeroOptimizer_Stage3.
_post_step``), so every rank always holds the current full adapter. Gradients are still
reduce-scattered and the fp32 master weights and Adam moments are still partitioned across ranks; only
the bf16 copy of the adapter (well under 1% of a 7B model) is replicated. The frozen base, where the
memory is, stays partitioned and is gathered layer by layer as usual. The same holds for the PEFT
baselines and a tuned projector, so their exports read real tensors too.

What is refused (config validation, before launch): ``--bits`` with ZeRO-3 (bitsandbytes storage is
not partitioned by ZeRO-3 in this recipe; use ZeRO-2), and ``--method full`` with ZeRO-3 (its
end-of-run export reads unpartitioned weights on rank 0; use ZeRO-2 / zero2_offload.json; specs.FullSpec).
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from torch import nn

logger = logging.getLogger(__name__)


def zero3_refusal(bits: Optional[int]) -> Optional[str]:
    """Why this configuration cannot run under ZeRO-3, or None when it can (method limits: specs.py)."""
    if bits is not None:
        return (
            f"bits={bits} with ZeRO-3: bitsandbytes' packed 4/8-bit storage is not partitioned by ZeRO-3 in "
            "this recipe; QLoRA runs use zero_configs/zero2.json (the quantized base is small anyway)"
        )
    return None


def is_zero3_param(p: nn.Parameter) -> bool:
    return hasattr(p, "ds_id") and hasattr(p, "ds_persist")


def persist_trainable_parameters(engine: Any) -> int:
    """Keep every trainable parameter gathered on all ranks for the whole run (collective: call on all ranks).

    Returns how many parameters were newly marked. Raises RuntimeError when the engine is not the ZeRO-3
    engine this relies on (e.g. another DeepSpeed version without ``persistent_parameters``).
    """
    optimizer = getattr(engine, "optimizer", None)
    persistent = getattr(optimizer, "persistent_parameters", None)
    if not isinstance(persistent, list):
        raise RuntimeError(
            f"ZeRO-3: {type(optimizer).__name__} has no persistent_parameters list; StructLoRA under "
            "ZeRO-3 needs DeepSpeed's stage-3 optimizer (deepspeed 0.19.x)"
        )
    trainable = [p for p in engine.module.parameters() if p.requires_grad]
    if not all(is_zero3_param(p) for p in trainable):
        raise RuntimeError("ZeRO-3: some trainable parameters were not converted by DeepSpeed")
    new = [p for p in trainable if not p.ds_persist]
    for p in trainable:
        p.ds_persist = True
        # DeepSpeed's post-forward release ignores ds_persist on a step it has not traced yet (the first
        # step, or a no-grad diagnostics call of the coordinator); it does skip external parameters.
        p.is_external_param = True
    known = {id(p) for p in persistent}
    persistent.extend(p for p in new if id(p) not in known)
    if trainable:
        trainable[0].all_gather(trainable)  # only the not-yet-available ones are gathered
    check_whole(engine.module, "after gathering")
    logger.info(
        "ZeRO-3: %d trainable parameters (%d elements) kept whole on every rank; the frozen base stays partitioned",
        len(trainable),
        sum(p.ds_numel for p in trainable),
    )
    return len(new)


def check_whole(module: nn.Module, when: str) -> None:
    """Raise RuntimeError if a trainable ZeRO-3 parameter is partitioned (its reads would see no data)."""
    short = [
        n for n, p in module.named_parameters() if p.requires_grad and is_zero3_param(p) and p.numel() != p.ds_numel
    ]
    if short:
        raise RuntimeError(
            f"ZeRO-3: {len(short)} trainable parameters are partitioned {when} (e.g. {short[0]}); "
            "StructLoRA needs them whole on every rank (llava_structlora/train/zero3.py)"
        )


def engine_is_zero3(engine: Any) -> bool:
    stage = getattr(engine, "zero_optimization_stage", None)
    return callable(stage) and stage() == 3
