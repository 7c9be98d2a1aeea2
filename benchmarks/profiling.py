"""Where does a StructLoRA training step spend its time? ``torch.profiler`` with labelled scopes.

The library has no ``record_function`` markers (they would cost time in every step), so this
module wraps the functions that only StructLoRA (or only PEFT LoRA) runs in labelled profiler
scopes for the duration of one profiled step, then restores them. The table then names the
file/function that carries any extra cost (CPU total, inclusive of children).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch.profiler import ProfilerActivity, profile, record_function

# (module, attribute path) of the code paths that differ between the two methods.
SCOPES = [
    ("llava_structlora.structlora.controller", "StructLoRAController.current_plans"),
    ("llava_structlora.structlora.controller", "StructLoRAController.gates"),
    ("llava_structlora.structlora.controller", "StructLoRAController.descriptors"),
    ("llava_structlora.structlora.controller", "StructLoRAController.plans"),
    ("llava_structlora.structlora.coordinator", "Coordinator.forward"),
    ("llava_structlora.structlora.layer", "StructLoRALinear.forward"),
    ("llava_structlora.structlora.layer", "stacked_factors"),
    ("peft.tuners.lora.layer", "Linear.forward"),
]


def _resolve(module: str, path: str) -> tuple[Any, str] | None:
    try:
        owner: Any = importlib.import_module(module)
    except ImportError:
        return None
    *parents, attr = path.split(".")
    for p in parents:
        owner = getattr(owner, p, None)
        if owner is None:
            return None
    return (owner, attr) if hasattr(owner, attr) else None


@contextmanager
def labelled_scopes() -> Iterator[None]:
    """Temporarily wrap every SCOPES entry in ``record_function('<module>:<path>')``."""
    saved = []
    for module, path in SCOPES:
        found = _resolve(module, path)
        if found is None:
            continue
        owner, attr = found
        fn = getattr(owner, attr)
        label = f"{module.rsplit('.', 1)[-1]}.py:{path}"

        def wrap(f, label=label):
            @functools.wraps(f)
            def inner(*a, **k):
                with record_function(label):
                    return f(*a, **k)

            return inner

        saved.append((owner, attr, fn))
        setattr(owner, attr, wrap(fn))
    try:
        yield
    finally:
        for owner, attr, fn in reversed(saved):
            setattr(owner, attr, fn)


def profile_step(stepper, batch: dict, rows: int = 20) -> str:
    """Two tables for one step: the labelled scopes (inclusive) and the top aten ops (self)."""
    stepper(batch)
    with labelled_scopes(), profile(activities=[ProfilerActivity.CPU]) as prof:
        stepper(batch)
    events = prof.key_averages()
    total_us = sum(e.self_cpu_time_total for e in events)
    scoped = sorted((e for e in events if ".py:" in e.key), key=lambda e: -e.cpu_time_total)
    lines = [
        f"step total (self CPU, all ops): {total_us / 1e3:.1f} ms",
        "| scope (file:function) | calls | CPU total (ms, incl. children) | share of step |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {e.key} | {e.count} | {e.cpu_time_total / 1e3:.2f} | {100 * e.cpu_time_total / max(total_us, 1):.1f}% |"
        for e in scoped
    ]
    lines += ["", events.table(sort_by="self_cpu_time_total", row_limit=rows)]
    return "\n".join(lines)
