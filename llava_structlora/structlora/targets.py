"""Which linear layers an adapter method adapts: the target regexes minus the dead layers.

A layer is *dead* when nothing the model computes depends on its output. In LLaVA the projector reads
vision features from ``vision_feature_layer`` (-2 in LLaVA-1.5), so the vision layers above it run but
their output never reaches the language model: adapters there get no gradient and stay ``B = 0``
(2 of the tiny base's 8 q/v vision adapters, CLIP layer 23 at 7B). Every method (StructLoRA and the
PEFT baselines) builds its target list here, so all compare on the same live modules.
"""

from __future__ import annotations

import re
from typing import Union

from torch import nn

from .graph import _LAYER_RE, _tower_of, vision_top_layer


def vision_layer_count(model: nn.Module) -> int | None:
    conf = getattr(getattr(model, "config", None), "vision_config", None)
    n = getattr(conf, "num_hidden_layers", None)
    return int(n) if n else None


def dead_vision_layers(model: nn.Module) -> set[int]:
    """Indices of the vision-tower layers above ``vision_feature_layer`` (empty if it is unknown)."""
    n_vis = vision_layer_count(model)
    vfl = getattr(getattr(model, "config", None), "vision_feature_layer", None)
    top = vision_top_layer(vfl, n_vis) if n_vis else None
    return set() if top is None else set(range(top + 1, n_vis))


def is_dead(name: str, dead_vision: set[int]) -> bool:
    m = _LAYER_RE.search(name)
    return _tower_of(name) == "vision" and m is not None and int(m.group(1)) in dead_vision


def resolve_target_modules(
    model: nn.Module,
    cfg_or_patterns: Union[StructLoRAConfig, str, list[str]],  # noqa: F821
    keep_dead_layers: bool | None = None,
) -> list[str]:
    """Full names of the ``nn.Linear`` modules to adapt, in ``named_modules()`` order.

    ``cfg_or_patterns``: a StructLoRAConfig (its targets and ``keep_dead_layers`` unless given here), a
    preset name (``qv``...), a regex, or a list of regexes (``re.search`` over module names).
    """
    from .config import TARGET_PRESETS, StructLoRAConfig

    if isinstance(cfg_or_patterns, StructLoRAConfig):
        patterns = cfg_or_patterns.target_patterns()
        keep = cfg_or_patterns.keep_dead_layers if keep_dead_layers is None else keep_dead_layers
    else:
        raw = cfg_or_patterns
        patterns = (
            list(TARGET_PRESETS[raw])
            if isinstance(raw, str) and raw in TARGET_PRESETS
            else ([raw] if isinstance(raw, str) else list(raw))
        )
        keep = bool(keep_dead_layers)
    pats = [re.compile(p) for p in patterns]
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and any(p.search(n) for p in pats)]
    if not names:
        raise ValueError(f"StructLoRAConfig.targets={patterns!r} matched no nn.Linear module of {type(model).__name__}")
    if keep:
        return names
    dead = dead_vision_layers(model)
    live = [n for n in names if not is_dead(n, dead)]
    if not live:
        raise ValueError(
            f"targets {patterns!r} match only dead layers (vision layers {sorted(dead)} above "
            "vision_feature_layer); set keep_dead_layers=True to adapt them anyway"
        )
    return live
