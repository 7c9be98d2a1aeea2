"""Suite settings (one dataclass) and the identity of one training run.

Two suites: ``full`` (what docs/RESULTS.md reports; sized to fit <= 2 h on the 2-core CI machine,
see docs/experiments.md) and ``quick`` (a CI-size check of the whole harness, < 3 min). They
differ only in data preset, steps, seeds, lr grid, evaluation size and which variants run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llava_structlora.utils.io import hash_jsonable
from recipes.layout import RepoLayout

LAYOUT = RepoLayout.checkout()
REPO = LAYOUT.root
METRIC = {"coco": "CIDEr", "vqav2": "overall", "gqa": "accuracy"}  # key in the evaluation's metrics
METRIC_LABEL = {"coco": "CIDEr (x100)", "vqav2": "VQA acc (%)", "gqa": "GQA acc (%)"}
METRIC_SCALE = {"coco": 100.0, "vqav2": 1.0, "gqa": 1.0}  # CIDEr 1.162 -> 116.2 as in the paper


@dataclass(frozen=True)
class SuiteConfig:
    """Everything that is the same for every run of a suite (the fairness contract)."""

    name: str = "full"
    preset: str = "default"  # shapes-world data + tiny-base preset
    world_seed: int = 0  # shapes-world seed: != 0 builds its own world + base (--world-seed)
    max_steps: int = 200
    batch_size: int = 16
    seeds: tuple[int, ...] = tuple(range(8))  # reporting seeds of the headline tables (test split)
    minor_seeds: int = 3  # non-headline tables use the first N reporting seeds
    lr_grid: tuple[float, ...] = (5e-4, 1e-3, 2e-3)  # initial grid; tuning grows it until bracketed
    tune_seed: int = 100  # lr picked on the validation split with this seed (never reported)
    val_limit: int | None = 300  # questions scored for lr selection
    test_limit: int | None = None  # None = the whole test split
    eval_batch_size: int = 32
    tasks: tuple[str, ...] = ("coco", "vqav2", "gqa")
    variants_per_table: int | None = None  # quick: keep only the first N variants / x values (+ LoRA)
    threads: int = 2
    tune_world: int | None = None  # lr picked on this world's tuning runs (cached there), never on this world's

    @property
    def tuning_suite(self) -> SuiteConfig:
        """The suite whose tuning runs pick the lr: this one, or the same suite on world ``tune_world``."""
        if self.tune_world is None or self.tune_world == self.world_seed:
            return self
        return dataclasses.replace(self, world_seed=self.tune_world, tune_world=None)

    @property
    def world_tag(self) -> str:
        """'' for world seed 0 (the repository's default artifacts), '-w<seed>' otherwise."""
        return f"-w{self.world_seed}" if self.world_seed else ""

    @property
    def data_root(self) -> Path:
        return LAYOUT.data(f"{self.preset}{self.world_tag}")

    @property
    def shared_base_dir(self) -> Path:
        """The repository's cached tiny base of this world (built by llava_structlora.toy.build_base)."""
        return LAYOUT.base(f"{self.preset}{self.world_tag}")

    @property
    def publishes(self) -> bool:
        """Only the full suite on the default world writes docs/ figures; others stay under out_root."""
        return self.name == "full" and not self.world_seed

    def record_name(self, name: str) -> str | None:
        """The published name of a table record of this suite (None: quick runs, never published). full, world 0:
        ``experiments_<t>``; deep: ``experiments_deep_<t>``; another world: ``replication-[deep-]wN_<t>``."""
        if self.name not in ("full", "deep"):
            return None
        deep = self.name == "deep"
        if not self.world_seed:
            return name.replace("experiments_", "experiments_deep_", 1) if deep else name
        return f"replication-{'deep-' if deep else ''}w{self.world_seed}_{name.removeprefix('experiments_')}"

    def seeds_for(self, headline: bool) -> tuple[int, ...]:
        """Reporting seeds of a table: all for the headline comparisons, the first `minor_seeds` otherwise."""
        return self.seeds if headline else self.seeds[: self.minor_seeds]

    @property
    def base_dir(self) -> Path:
        """The suite's snapshot of the shared base: a rebuild of the shared one mid-suite cannot mix bases."""
        return self.out_root / "base"

    @property
    def out_root(self) -> Path:
        """Runs, cache and (quick) records; EXPERIMENTS_OUT moves it (tests use a temp dir)."""
        root = Path(os.environ.get("EXPERIMENTS_OUT") or LAYOUT.outputs / "experiments")
        return root / f"{self.name}{self.world_tag}"

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


FULL = SuiteConfig()
# The deeper testbed (issue #20): 4 + 4 layers at 96-d, a test split twice as large, ranks down to 1 (where LoRA's
# score still changes with rank); everything else is the full suite's contract. Records: experiments_deep_*.
DEEP = SuiteConfig(name="deep", preset="deep")
SUITES = {"full": FULL, "deep": DEEP}
QUICK = SuiteConfig(
    name="quick",
    preset="smoke",
    max_steps=6,
    batch_size=8,
    seeds=(0, 1),
    minor_seeds=2,
    lr_grid=(2e-4, 5e-4),
    val_limit=24,
    test_limit=24,
    eval_batch_size=24,
    tasks=("coco",),
    variants_per_table=1,
)


@functools.lru_cache(maxsize=8)
def _stamp_digest(path: Path, mtime: float) -> str:
    """Digest of a build stamp's identity: timings are dropped, and so is the data_prep source digest (a
    refactor that writes the same world must not invalidate the cache; a changed world changes the input
    JSON hashes in the base's stamp, hence a new base and a new fingerprint)."""
    stamp = json.loads(path.read_text())
    if "fingerprint" in stamp:  # data stamp: the preset + seed fingerprint
        return hash_jsonable({k: v for k, v in stamp["fingerprint"].items() if k != "sources"})
    return hash_jsonable(stamp.get("key", stamp))


def artifacts_fingerprint(suite: SuiteConfig) -> str:
    """Digest of the data and base build stamps: a rebuilt world or base never reuses cached runs."""
    parts = []
    for stamp in (suite.data_root / "build_stamp.json", suite.base_dir / "build_stamp.json"):
        parts.append(_stamp_digest(stamp, stamp.stat().st_mtime) if stamp.exists() else "missing")
    return "-".join(parts)


@dataclass(frozen=True)
class RunSpec:
    """One training run + its evaluations. Equal specs share one cached result across tables."""

    task: str
    method: str
    seed: int
    lr: float
    rank: int = 8
    data_fraction: float = 1.0
    overrides: tuple[tuple[str, Any], ...] = field(default_factory=tuple)  # StructLoRA CLI knobs

    @property
    def uses_gnn(self) -> bool:
        """A StructLoRA run with the learned coordinator (its cache key carries the GNN's revision)."""
        from llava_structlora.structlora.config import StructLoRAConfig

        return (
            self.method == "structlora"
            and dict(self.overrides).get("coordinator", StructLoRAConfig.coordinator) == "gnn"
        )

    def splits(self, suite: SuiteConfig) -> tuple[str, ...]:
        """Tuning-seed runs are scored on validation only; reporting seeds on test (what the tables report),
        StructLoRA's also on validation: its shipped defaults are chosen on validation scores, never on test."""
        if self.seed == suite.tune_seed:
            return ("val",)
        return ("val", "test") if self.method == "structlora" else ("test",)

    def key(self, suite: SuiteConfig) -> str:
        ident = dataclasses.asdict(self) | {
            "steps": suite.max_steps,
            "batch": suite.batch_size,
            "preset": suite.preset,
            "val_limit": suite.val_limit,
            "test_limit": suite.test_limit,
            "artifacts": artifacts_fingerprint(suite),
        }
        if self.uses_gnn:
            from llava_structlora.structlora.coordinator import GNN_REVISION

            ident["gnn_revision"] = GNN_REVISION
        if self.method == "structlora" and dict(self.overrides).get("coordinator") == "coupling":
            from llava_structlora.structlora.coordinator import COUPLING_REVISION

            if COUPLING_REVISION != 1:  # revision 1 is keyed without it (the first runs of the operator)
                ident["coupling_revision"] = COUPLING_REVISION
        tag = "-".join(f"{k}{v}" for k, v in self.overrides)
        return (
            f"{self.task}-{self.method}-r{self.rank}-lr{self.lr:g}-f{self.data_fraction:g}"
            f"{'-' + tag if tag else ''}-s{self.seed}-{hash_jsonable(ident)[:8]}"
        )

    def train_argv(self, suite: SuiteConfig, out_dir: Path) -> list[str]:
        """Command-line flags of `python -m llava_structlora.train` for this run (single process)."""
        argv = [
            "--model_name_or_path",
            str(suite.base_dir),
            "--task",
            self.task,
            "--data_path",
            str(suite.data_root / self.task / "llava_train.json"),
            "--data_root",
            str(suite.data_root),
            "--output_dir",
            str(out_dir),
            "--method",
            self.method,
            "--lora_r",
            str(self.rank),
            "--lora_alpha",
            str(2 * self.rank),
            "--learning_rate",
            str(self.lr),
            "--seed",
            str(self.seed),
            "--data_seed",
            str(self.seed),
            "--data_fraction",
            str(self.data_fraction),
            "--max_steps",
            str(suite.max_steps),
            "--per_device_train_batch_size",
            str(suite.batch_size),
            "--save_strategy",
            "no",
            "--report_to",
            "none",
            "--run_eval",
            "false",
            "--logging_steps",
            "5",
            "--plots",
            "false",
            "--disable_tqdm",
            "true",
        ]
        for k, v in self.overrides:
            argv += [f"--{k}", str(v)]
        return argv
