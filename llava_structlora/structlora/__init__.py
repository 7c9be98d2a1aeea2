"""StructLoRA: IB-gated, graph-coordinated LoRA (ACL 2026, arXiv 2603.14228), training-only, merged away.

Public API (docs/ARCHITECTURE.md)::

    from llava_structlora.structlora import (StructLoRAConfig, apply_structlora, structlora_regularizer,
        merge_structlora, export_peft_adapter, structlora_diagnostics)
"""

from .config import StructLoRAConfig
from .export import export_peft_adapter
from .graph import StructLoRAGraph
from .layer import StructLoRALinear, name_seed
from .model import (
    apply_structlora,
    get_controller,
    load_structlora,
    load_structlora_graph,
    merge_structlora,
    save_structlora,
    structlora_diagnostics,
    structlora_moved,
    structlora_on_step,
    structlora_regularizer,
    structlora_state_dict,
)
from .optim import structlora_param_groups
from .targets import resolve_target_modules

__all__ = [
    "StructLoRAConfig",
    "apply_structlora",
    "structlora_regularizer",
    "merge_structlora",
    "export_peft_adapter",
    "structlora_diagnostics",
    "structlora_on_step",
    "save_structlora",
    "load_structlora",
    "load_structlora_graph",
    "structlora_state_dict",
    "get_controller",
    "StructLoRALinear",
    "StructLoRAGraph",
    "name_seed",
    "structlora_param_groups",
    "resolve_target_modules",
    "structlora_moved",
]
