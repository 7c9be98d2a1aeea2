"""The learning rates the recipes use on the embedded default (shapes world + `default` tiny base).

Why not the paper's 2e-4: on the 0.96 M-parameter tiny base a few hundred steps at 2e-4 barely move a
LoRA (the default COCO recipe gained 0.08 CIDEr at 2e-4, issue 21). The study tuned every method's lr on
**validation** (its own tuning seed, apart from the reporting seeds) on exactly this base, and these are
its picks. A real `MODEL` (or any other base: the smoke preset, `ARCH=next`) keeps the paper's recipe (the
training dataclass default, 2e-4, in llava_structlora/train/config.py).

Source of every value: `docs/results/<STUDY_RECORD[method]>.json`, `data.tuned[<task>][<method>]` (`lr` = the
argmax of `val` over the grid; COCO val CIDEr x100, VQAv2 / GQA val accuracy in points; 200 steps x batch 16,
tune seed 100, world seed 0). StructLoRA's come from `experiments_coordinator`, the table that tuned the shipped
StructLoRA (coordinator=coupling, the default since 2026-12-07); the other methods' from `experiments_main`.
`tests/recipes/test_toy_defaults.py` reads those records and fails when a value here no longer is its
validation pick (e.g. after the study re-ran a table): update the table then.

Steps are not changed: the study fixes 200 steps (it does not tune them); the recipes keep their one epoch
(235-281 steps at 2 ranks x 16, about 2.5x the study's samples), and `benchmarks/recipe_check.py` records
what they gain over the base with these learning rates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .layout import RepoLayout

# method -> the record (docs/results/<name>.json) whose validation tuning picked its lr.
STUDY_RECORD: dict[str, str] = {
    m: "experiments_coordinator" if m == "structlora" else "experiments_main"
    for m in ("structlora", "lora", "dora", "adalora", "lora_dropout")
}
# (task, method) -> lr picked on validation by the study (STUDY_RECORD[method], data.tuned[task][method]["lr"]).
TOY_LR: dict[tuple[str, str], float] = {
    ("coco", "structlora"): 2e-2,  # val CIDEr x100: 547.0 at 2e-2 (529.1 at 1e-2, 342.0 at 5e-2)
    ("coco", "lora"): 1e-2,
    ("coco", "dora"): 1e-2,
    ("coco", "adalora"): 1e-3,
    ("coco", "lora_dropout"): 1e-2,
    ("vqav2", "structlora"): 2e-4,  # val accuracy: 57.77 at 2e-4 (55.70 at 1e-4, 57.43 at 5e-4)
    ("vqav2", "lora"): 2e-4,
    ("vqav2", "dora"): 1e-3,
    ("vqav2", "adalora"): 2e-3,
    ("vqav2", "lora_dropout"): 2e-4,
    ("gqa", "structlora"): 5e-3,  # val accuracy: 51.0 at 5e-3 and at 1e-2 (tie: the smaller), 50.33 at 2e-3
    ("gqa", "lora"): 5e-3,
    ("gqa", "dora"): 2e-3,
    ("gqa", "adalora"): 5e-3,
    ("gqa", "lora_dropout"): 2e-3,
}
# Not in the study, so the paper's lr stays: `full` fine-tuning, and the `mix` task (no validation grid).
TOY_PRESET, TOY_ARCH = "default", "llava"


def uses_toy_base(model_name_or_path: str | Path, layout: RepoLayout) -> bool:
    """True when the run trains the base the study tuned on (artifacts/base/default, LLaVA-1.5 layout)."""
    return Path(model_name_or_path) == layout.base(TOY_PRESET, TOY_ARCH)


def toy_defaults(task: str, method: str, model_name_or_path: str | Path, layout: RepoLayout) -> dict[str, Any]:
    """Training options for the recipe to apply below the YAML (so a flag or YAML key still wins): the
    study's validated lr when the run uses the studied tiny base and the study tuned (task, method); else {}."""
    if not uses_toy_base(model_name_or_path, layout):
        return {}
    lr = TOY_LR.get((task, method))
    return {"learning_rate": lr} if lr is not None else {}
