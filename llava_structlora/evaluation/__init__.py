"""Evaluation: load base + adapter (merged), batched greedy generation, sharded/resumable, scored.

Public API (docs/ARCHITECTURE.md): `load_model(base, adapter=None, dtype=..., device=...) -> (model, processor)`,
`EvalConfig`, `evaluate(cfg) -> metrics`. CLI: `python -m llava_structlora.evaluation --help`.
"""

from .config import TASKS, EvalConfig
from .load import ModelLoadError, adapter_kind, load_model


def evaluate(cfg: EvalConfig) -> dict:
    """Lazy wrapper (keeps `import llava_structlora.evaluation` light)."""
    from .run import evaluate as _evaluate

    return _evaluate(cfg)


__all__ = ["TASKS", "EvalConfig", "ModelLoadError", "adapter_kind", "load_model", "evaluate"]
