"""The two spellings of vision-tower module names: transformers 4 (`vision_tower.vision_model.encoder...`) and
transformers 5 (`vision_tower.encoder...`). Plain string rules with no project imports, so that low-level
loaders (strict_load.py) and the portable writers (portable.py) share them."""

from __future__ import annotations

import re

# Children of a CLIP/SigLIP ``*VisionModel.vision_model``: a key that has one of them right after
# ``vision_tower.`` is in v5 form.
_TOWER_CHILDREN = r"(?:embeddings|encoder|pre_layrnorm|post_layernorm|head)"
_V5_TOWER_KEY = re.compile(rf"(^|\.)vision_tower\.(?={_TOWER_CHILDREN}\.)")
_V5_TOWER_RX = re.compile(rf"vision_tower\\\.(?={_TOWER_CHILDREN}\\\.)")
BOTH_TOWER_RX = r"vision_tower\.(?:vision_model\.)?"


def v4_key(key: str) -> str:
    """A state-dict / module name in the spelling transformers 4 uses (idempotent)."""
    return _V5_TOWER_KEY.sub(r"\1vision_tower.vision_model.", key)


def v5_key(key: str) -> str:
    """The inverse of `v4_key`: the module name a transformers-5 model uses."""
    return key.replace("vision_tower.vision_model.", "vision_tower.")


def both_versions_regex(pattern: str) -> str:
    """A regex over module names, widened so that it matches the v4 and the v5 tower spelling."""
    return _V5_TOWER_RX.sub(lambda _: BOTH_TOWER_RX, pattern)
