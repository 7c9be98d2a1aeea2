"""The paper's tables as data: which variants run, on which task, and what the paper reported.

A variant names a method plus StructLoRA overrides. Learning rates are tuned (validation split,
seed ``tune_seed``) only for the five methods of the main table, per task; every other variant
reuses the lr picked for its *family* (``lr_from``) on the same task, so ablations differ from
the full method in exactly one component and use the same budget (docs/experiments.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _structlora_defaults() -> dict[str, Any]:
    """StructLoRA's shipped defaults (StructLoRAConfig, the one source of truth): an override equal to
    one of them is dropped, so e.g. "1-layer GNN" and "StructLoRA" are the same cached run."""
    import dataclasses

    from llava_structlora.structlora.config import StructLoRAConfig

    return {f.name: getattr(StructLoRAConfig(), f.name) for f in dataclasses.fields(StructLoRAConfig)}


DEFAULTS = _structlora_defaults()


@dataclass(frozen=True)
class Variant:
    label: str
    method: str
    overrides: tuple[tuple[str, Any], ...] = ()
    lr_from: str | None = None  # main-table method whose tuned lr this variant uses
    rank: int = 8
    data_fraction: float = 1.0
    headline: bool | None = None  # None: the table's; False: a minor variant (suite.minor_seeds seeds)

    def __post_init__(self) -> None:
        kept = tuple((k, v) for k, v in self.overrides if DEFAULTS.get(k) != v)
        object.__setattr__(self, "overrides", kept)

    @property
    def family(self) -> str:
        return self.lr_from or self.method


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    tasks: tuple[str, ...]
    variants: tuple[Variant, ...]
    paper: dict[str, Any] = field(default_factory=dict)  # label -> paper number(s) (LLaVA-1.5-7B, COCO)
    curve: str | None = None  # "rank" | "data_fraction": plotted as a curve
    claim: str = ""
    headline: bool = False  # headline comparisons get every reporting seed

    def seeds(self, v: Variant, suite) -> tuple[int, ...]:
        """Reporting seeds of one variant of this table."""
        return suite.seeds_for(self.headline if v.headline is None else v.headline)


LORA = Variant("LoRA", "lora")
STRUCT = Variant("StructLoRA", "structlora")
NONE_IB = ("filter", "none")
NONE_GNN = ("coordinator", "none")


LAMBDA0 = Variant("learned scale, no IB (lambda_ib=0)", "structlora", (("lambda_ib", 0.0),), "structlora")
# The coordinator's control: what a GNN-free learned per-layer update scale does (not in the paper).
LAYER_SCALE = Variant(
    "LoRA + learned layer scale (filter=layer_scale, coordinator=none)",
    "structlora",
    (("filter", "layer_scale"), NONE_GNN),
    "structlora",
)


# The GNN's control: the fixed Laplacian smoother an untrained GNN coordinator equals (GNN revision 3).
FIXED_SMOOTHING = Variant(
    "fixed smoothing, no learned weights (coordinator=laplacian)",
    "structlora",
    (("coordinator", "laplacian"),),
    "structlora",
)


# The coordinator that measures the coupling instead of learning it (issue #20; docs/structlora.md). It is the
# shipped default since 2026-12-07, so this override is dropped and the row is the same run as "StructLoRA"; it
# stays for the records written before (where "StructLoRA" was the GNN).
COUPLING = Variant(
    "measured coupling (coordinator=coupling)", "structlora", (("coordinator", "coupling"),), "structlora"
)
# The paper's learned coordinator, now an option: at the lr tuned for StructLoRA (one component changed).
GNN = Variant("paper's learned GNN (coordinator=gnn)", "structlora", (("coordinator", "gnn"),), "structlora")


def matched(base: Variant, at: str, headline: bool | None = None) -> Variant:
    """`base` trained at the lr tuned for method `at` (a matched-lr contrast row of the main table)."""
    names = {"structlora": "StructLoRA", "lora": "LoRA", "dora": "DoRA"}
    return Variant(f"{base.label} at {names.get(at, at)}'s lr", base.method, base.overrides, at, headline=headline)


DORA = Variant("DoRA", "dora")
ADALORA = Variant("AdaLoRA", "adalora", headline=False)
LORA_DROPOUT = Variant("LoRA-Dropout", "lora_dropout", headline=False)
# Matched-lr contrasts of the main table: each pair also at one shared lr, both ways for the headline pairs
# (the tuned-lr contrast mixes the method with its lr; a row equal to a tuned row is the same cached run).
MATCHED_LR = (
    matched(LORA, "structlora"),
    matched(STRUCT, "lora"),
    matched(DORA, "structlora"),
    matched(STRUCT, "dora"),
    matched(ADALORA, "structlora", headline=False),
    matched(LORA_DROPOUT, "structlora", headline=False),
)


def _pair_over(attr: str, values: tuple, headline: tuple = ()) -> tuple[Variant, ...]:
    """LoRA and StructLoRA at each x value; x values in `headline` get every reporting seed."""
    out = []
    for v in values:
        for base in (LORA, STRUCT):
            kw = {attr: v}
            label = f"{base.label} {attr.replace('data_fraction', 'data')}={v:g}"
            out.append(Variant(label, base.method, base.overrides, base.method, headline=v in headline, **kw))
    return tuple(out)


def _knob(knob: str, value: Any, label: str = "{knob}={value}") -> Variant:
    """StructLoRA with one knob changed (the single-knob ablation rows)."""
    return Variant(label.format(knob=knob, value=value), "structlora", ((knob, value),), "structlora")


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "main",
            "Main table: PEFT methods at r=8 (3 tasks)",
            ("coco", "vqav2", "gqa"),
            (LORA, DORA, ADALORA, LORA_DROPOUT, STRUCT) + MATCHED_LR,
            paper={
                "LoRA": {"coco": 116.2, "vqav2": 73.5},
                "DoRA": {"coco": 120.3, "vqav2": 75.0},
                "StructLoRA": {"coco": 122.9, "vqav2": 75.9},
            },
            claim="StructLoRA beats LoRA and DoRA on COCO CIDEr (+6.7 / +2.6) and VQAv2 (+2.4 / +0.9)",
            headline=True,
        ),
        Table(
            "rank",
            "Rank table (COCO captions)",
            ("coco",),
            _pair_over("rank", (2, 4, 8, 16, 32), (2, 4, 8)),
            paper={
                "LoRA": {2: 111.2, 4: 113.8, 8: 116.2, 16: 118.1, 32: 119.0},
                "StructLoRA": {2: 114.3, 4: 117.0, 8: 122.4, 16: 123.6, 32: 123.9},
            },
            curve="rank",
            claim="StructLoRA > LoRA at every rank, by +3.1 to +6.2 CIDEr",
            headline=True,
        ),
        Table(
            "data",
            "Low-data table (COCO captions)",
            ("coco",),
            _pair_over("data_fraction", (0.01, 0.03, 0.1, 0.25, 0.5, 1.0), (0.01, 0.1, 1.0)),
            paper={
                "LoRA": {0.1: 100.2, 0.25: 108.3, 0.5: 114.0, 1.0: 116.2},
                "StructLoRA": {0.1: 103.7, 0.25: 112.4, 0.5: 117.9, 1.0: 122.4},
            },
            curve="data_fraction",
            claim="StructLoRA > LoRA at every data fraction, by +3.5 to +6.2 CIDEr",
            headline=True,
        ),
        Table(
            "ablation",
            "Component ablations (COCO captions, VQAv2)",
            ("coco", "vqav2"),
            (
                STRUCT,
                Variant("w/o IB (filter=none)", "structlora", (NONE_IB,), "structlora"),
                Variant("w/o GNN (coordinator=none)", "structlora", (NONE_GNN,), "structlora"),
                Variant("w/o both (filter=none, coordinator=none)", "structlora", (NONE_IB, NONE_GNN), "structlora"),
                LORA,
                LAMBDA0,
                LAYER_SCALE,
                FIXED_SMOOTHING,
                GNN,
            ),
            paper={
                "StructLoRA": 122.4,
                "w/o IB (filter=none)": 117.8,
                "w/o GNN (coordinator=none)": 119.4,
                "w/o both (filter=none, coordinator=none)": 116.2,
                "LoRA": 116.2,
            },
            claim="removing IB costs most (-4.6), removing the GNN -3.0; without both = LoRA",
            headline=True,
        ),
        Table(
            "coordinator",
            "The shipped coordinator (measured coupling) vs the paper's learned GNN and LoRA, r=8 (3 tasks)",
            ("coco", "vqav2", "gqa"),
            (STRUCT, GNN, LORA, matched(LORA, "structlora")),
            claim="(no paper claim: the default since 2026-12-07 vs the paper's GNN at the same lr, and vs LoRA)",
            headline=True,
        ),
        Table(
            "lora_rank",
            "Does the rank change LoRA's score? (testbed check, COCO captions)",
            ("coco",),
            tuple(Variant(f"LoRA rank={r}", "lora", rank=r, lr_from="lora") for r in (1, 2, 4)) + (LORA,),
            claim="(no paper claim: LoRA at each rank vs LoRA r=8; a rank table can only rank methods where it moves)",
            headline=True,
        ),
        Table(
            "gnn_depth",
            "GNN depth (COCO captions)",
            ("coco",),
            tuple(_knob("gnn_layers", d, "{value}-layer GNN") for d in (1, 2, 3)) + (LORA,),
            paper={"1-layer GNN": "best (BoolQ 81.3)", "2-layer GNN": "BoolQ 80.4", "3-layer GNN": "BoolQ 79.7"},
            claim="1 layer is best; 2-3 layers over-smooth (paper: BoolQ only)",
        ),
        Table(
            "graph",
            "Graph construction (COCO captions)",
            ("coco",),
            tuple(_knob("graph", g) for g in ("hybrid", "adjacency", "similarity")) + (LORA,),
            paper={"graph=hybrid": "BoolQ 81.3", "graph=adjacency": "BoolQ 80.5", "graph=similarity": "BoolQ 80.2"},
            claim="hybrid > adjacency-only and similarity-only (paper: BoolQ only)",
        ),
        Table(
            "filter",
            "Filtering strategy (COCO captions)",
            ("coco",),
            tuple(_knob("filter", f) for f in ("ib", "topk_norm", "random")) + (LORA,),
            paper={"filter=ib": "strongest", "filter=topk_norm": "moderate", "filter=random": "weakest"},
            claim="IB > top-k norm > random (paper: Figure 2, no numbers)",
        ),
        Table(
            "defaults",
            "StructLoRA knobs on validation (COCO captions): the evidence for the shipped defaults",
            ("coco",),
            (
                Variant("StructLoRA", "structlora", headline=True),
                Variant(LAMBDA0.label, "structlora", LAMBDA0.overrides, "structlora", headline=True),
            )
            + tuple(
                _knob(k, v)
                for k, v in (
                    ("lambda_ib", 1e-4),
                    ("lambda_ib", 1e-2),
                    ("gate_lr_mult", 10.0),
                    ("gate_lr_mult", 1000.0),
                    ("modulation", "normalized"),
                    ("gate_noise", "none"),
                    ("smooth_edges", "same_shape"),
                    ("edge_weights", "free"),
                    ("coordinator_lr_mult", 1.0),
                )
            ),
            claim="(no paper claim: each knob vs the shipped default, validation split)",
        ),
        Table(
            "regularizers",
            "Static regularizers vs GNN coordination (COCO captions, App. C)",
            ("coco",),
            (
                Variant("LoRA+Cos", "structlora", (NONE_IB, ("coordinator", "cosine_penalty")), "lora"),
                LORA,
                Variant("LoRA+Lap", "structlora", (NONE_IB, ("coordinator", "laplacian_penalty")), "lora"),
                Variant("LoRA+GNN (filter=none)", "structlora", (NONE_IB,), "structlora"),
                STRUCT,
            ),
            paper={
                "LoRA+Cos": {"score": 82.3, "drift": 3.98, "cos_adj": 0.46},
                "LoRA+Lap": {"score": 83.0, "drift": 3.72, "cos_adj": 0.49},
                "StructLoRA": {"score": 84.1, "drift": 3.05, "cos_adj": 0.56},
            },
            claim="GNN coordination gives the best task score, lowest drift energy and highest CosAdj",
        ),
    )
}
ORDER = (
    "main",
    "rank",
    "data",
    "ablation",
    "coordinator",
    "gnn_depth",
    "graph",
    "filter",
    "regularizers",
    "defaults",
    "lora_rank",
)


def variants_for(table: Table, limit: int | None) -> tuple[Variant, ...]:
    """The variants a suite runs: all, or (quick) the first `limit` plus StructLoRA and LoRA (the t-test pair)."""
    if limit is None:
        return table.variants
    chosen = list(table.variants[:limit])
    if table.curve:  # keep both methods at the first `limit` x values
        xs = sorted({getattr(v, table.curve) for v in table.variants})[:limit]
        chosen = [v for v in table.variants if getattr(v, table.curve) in xs]
    for ref in (STRUCT, LORA):
        if ref in table.variants and ref not in chosen:
            chosen.append(ref)
    return tuple(chosen)
