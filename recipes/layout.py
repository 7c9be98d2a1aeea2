"""The checkout's layout, known in exactly one place.

configs/<task>.yaml, configs/<task>_smoke.yaml   the recipes' YAML (one per task and preset)
artifacts/data/<preset>/                         DATA_ROOT of the offline shapes world
artifacts/base/<preset>[-next]/                  the tiny LLaVA (-1.5, or -NeXT) base built on it
artifacts/eval_cache/                            base-model scores, reused across runs
outputs/<task>-<method>-r<r>-s<seed>[-next][-<hash>][-smoke]/   a training run (llava_structlora.rundir.RunDir;
                                                 the hash: recipes/run_naming.py)
zero_configs/                                    DeepSpeed configs
docs/results/                                    benchmark/experiment records (recipes.results)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PRESETS = ("default", "smoke")
ARCHS = ("llava", "next")  # toy base architectures: LLaVA-1.5, LLaVA-NeXT (converted from the 1.5 one)


@dataclass(frozen=True)
class RepoLayout:
    """Paths of one checkout. ``RepoLayout.checkout()`` is the repository this file lives in."""

    root: Path

    @classmethod
    def checkout(cls) -> RepoLayout:
        return cls(Path(__file__).resolve().parents[1])

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    def recipe_config(self, task: str, preset: str) -> Path:
        """The YAML recipe of `task` for a data preset (`smoke` has its own, smaller one)."""
        return self.configs / (f"{task}_smoke.yaml" if preset == "smoke" else f"{task}.yaml")

    def data(self, preset: str) -> Path:
        """Default DATA_ROOT: the shapes world of `preset` (data_prep.build_default builds it)."""
        return self.root / "artifacts" / "data" / preset

    def base(self, preset: str, arch: str = "llava") -> Path:
        """Default MODEL: the tiny base of `preset` (llava_structlora.toy.build_base builds it; arch `next`:
        llava_structlora.toy.build_next converts it to LLaVA-NeXT)."""
        return self.root / "artifacts" / "base" / (preset if arch == "llava" else f"{preset}-{arch}")

    @property
    def eval_cache(self) -> Path:
        return self.root / "artifacts" / "eval_cache"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def results(self) -> Path:
        """docs/results/: one JSON record per benchmark/experiment (recipes.results renders docs/RESULTS.md)."""
        return self.root / "docs" / "results"

    @property
    def zero_configs(self) -> Path:
        return self.root / "zero_configs"

    def resolve(self, path: str | Path) -> Path:
        """A user path: absolute, or existing relative to the caller's directory, else relative to the root."""
        p = Path(path)
        return p if p.is_absolute() or p.exists() else self.root / p

    @staticmethod
    def finetune_script(task: str) -> str:
        """The shell recipe that trains `task` (relative to the root)."""
        return f"scripts/finetune_{task}.sh"

    def run_dir(
        self, task: str, method: str, r: int, seed: int, smoke: bool, arch: str = "llava", settings: str = ""
    ) -> Path:
        """Default OUTPUT_DIR of a training run, named from its parsed configuration."""
        return self.outputs / run_name(task, method, r, seed, smoke, arch, settings)


def run_name(task: str, method: str, r: int, seed: int, smoke: bool, arch: str = "llava", settings: str = "") -> str:
    """`<task>-<method>-r<r>-s<seed>[-<arch>][-<settings>]` (+ `-smoke` for the smoke preset): what eval/*.sh
    looks for.

    Args:
        arch: the toy base's architecture; `llava` adds nothing, `next` adds `-next`.
        settings: the hash of the other weight-changing options set away from the recipe (run_naming.py).
    """
    parts = [f"{task}-{method}-r{r}-s{seed}", "" if arch == "llava" else arch, settings, "smoke" if smoke else ""]
    return "-".join(p for p in parts if p)


def is_smoke_name(name: str) -> bool:
    return name.endswith("-smoke")
