"""Record the planted-problem results into docs/results/planted_problems.json.

    python -m experiments.planted            # ~20 min on 2 busy cores
    python -m experiments.planted --quick    # 1 seed, fewer grid points (nothing recorded)
    python -m experiments.planted --parts structure   # only (c) + (d) (experiments/planted_hard.py)

(a) filter: gate_lr_mult x lambda_ib grid on the recipe schedule, default knobs and the old setup, per seed:
    eval gates before/after, fraction of true directions kept, of nuisance directions closed, median |d log_alpha|.
(b) coordinator: held-out relative update error of LoRA vs the GNN coordinator (and the fixed Laplacian) over an
    lr grid on tuning seeds 0-3, then both at their best lr on reporting seeds 10-12. Passable by a fixed smoother
    (the truth varies smoothly with depth): kept as the record of what the GNN does there.
(c) + (d), the problems a fixed rule cannot pass (experiments/planted_hard.py): heterogeneous coupling (+1 / 0 / -1
    per edge) against LoRA and the tuned fixed smoother, with rho and effective edges; the IB filter against
    norm-threshold pruning at the same kept rank, nuisance directions as large as the true ones. Recorded as
    planted_structure.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch

from llava_structlora.structlora import StructLoRAConfig
from llava_structlora.structlora.coordinator import GNN_REVISION
from llava_structlora.structlora.planted import CoordinatorProblem, FilterProblem, Schedule, run_coordinator, run_filter
from recipes.results import record_result

OLD = dict(gate_init=0.674)  # + one AdamW group with weight decay, lambda averaged over layers (see run_filter_grid)


def run_filter_grid(seeds: list[int], mults: list[float], lams: list[float]) -> dict[str, Any]:
    p = FilterProblem()
    out: dict[str, Any] = {"problem": vars(p), "grid": []}
    for mult in mults:
        for lam in lams:
            runs = [run_filter(p, StructLoRAConfig(gate_lr_mult=mult, lambda_ib=lam), Schedule(), s) for s in seeds]
            out["grid"].append({"gate_lr_mult": mult, "lambda_ib": lam, "seeds": seeds, "runs": runs})
    old = StructLoRAConfig(lambda_ib=1e-3 / p.n_layers, **OLD)
    out["old_setup"] = [run_filter(p, old, Schedule(old_optimizer=True), s) for s in seeds]
    out["default"] = [run_filter(p, StructLoRAConfig(), Schedule(), s) for s in seeds]
    d = StructLoRAConfig()
    out["default_knobs"] = {"gate_lr_mult": d.gate_lr_mult, "lambda_ib": d.lambda_ib}
    return out


def run_coordinator_study(tune_seeds: list[int], report_seeds: list[int], lrs: list[float]) -> dict[str, Any]:
    p = CoordinatorProblem()
    methods = {
        "lora": StructLoRAConfig(filter="none", coordinator="none"),
        "gnn": StructLoRAConfig(filter="none", coordinator="gnn"),
        "gnn_coord_lr_x1": StructLoRAConfig(filter="none", coordinator="gnn", coordinator_lr_mult=1.0),
        "gnn_free_edges": StructLoRAConfig(filter="none", coordinator="gnn", edge_weights="free"),
        "laplacian": StructLoRAConfig(filter="none", coordinator="laplacian"),
    }
    tuning: dict[str, dict[float, list[float]]] = {m: {} for m in methods}
    for m, cfg in methods.items():
        for lr in lrs:
            tuning[m][lr] = [
                run_coordinator(p, cfg, Schedule(lr=lr, steps=150), s)["rel_update_error"] for s in tune_seeds
            ]
    best = {m: min(lrs, key=lambda lr: statistics.mean(tuning[m][lr])) for m in methods}
    runs = {
        m: [run_coordinator(p, methods[m], Schedule(lr=best[m], steps=150), s) for s in report_seeds] for m in methods
    }
    report = {m: [r["rel_update_error"] for r in rs] for m, rs in runs.items()}
    smoothing = {m: [r["smoothing_coef_mean"] for r in rs] for m, rs in runs.items()}
    return {
        "problem": vars(p),
        "tune_seeds": tune_seeds,
        "report_seeds": report_seeds,
        "lrs": lrs,
        "tuning": {m: {str(k): v for k, v in d.items()} for m, d in tuning.items()},
        "best_lr": best,
        "report": report,
        "smoothing_coef_mean": smoothing,
        "gnn_revision": GNN_REVISION,
    }


def _fmt(v: float) -> str:
    return f"{v:.3f}"


def markdown(filt: dict[str, Any], coord: dict[str, Any]) -> str:
    mean = statistics.mean
    lines = [
        "**(a) Filter** (k=2 true of r=8 directions per layer, 4 layers, recipe schedule lr 2e-4 x 250 steps). "
        "Mean over seeds: true directions kept (eval gate >= 0.5), nuisance directions closed (< 0.5), "
        "exactly closed (<= 0.01), median |d log_alpha|.",
        "",
        "| setup | gate_lr_mult | lambda_ib | true kept | nuisance closed | exactly closed | median abs d log_alpha |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(name, mult, lam, runs):
        vals = [
            mean(r[k] for r in runs)
            for k in ("true_kept", "nuisance_closed", "nuisance_exactly_closed", "median_abs_param_delta")
        ]
        lines.append(f"| {name} | {mult} | {lam} | " + " | ".join(_fmt(v) for v in vals) + " |")

    for g in filt["grid"]:
        row("grid", g["gate_lr_mult"], g["lambda_ib"], g["runs"])
    d = filt.get("default_knobs") or {
        "gate_lr_mult": StructLoRAConfig().gate_lr_mult,
        "lambda_ib": StructLoRAConfig().lambda_ib,
    }
    row("defaults of this run", d["gate_lr_mult"], d["lambda_ib"], filt["default"])
    row("old setup (x1 lr, wd on gates, init 0.674, IB mean)", 1, "1e-3 / L", filt["old_setup"])
    lines += [
        "",
        "**(b) Coordinator** (6 layers, updates rotating smoothly with depth, 32 noisy samples per layer). "
        f"Relative error of the merged update vs the truth; lr tuned per method on seeds {coord['tune_seeds']}, "
        f"reported on seeds {coord['report_seeds']}. Coordinator: GNN revision {coord.get('gnn_revision', 1)} "
        "(llava_structlora/structlora/coordinator.py).",
        "",
        "| method | best lr | error per reporting seed | mean | smoothing coef eta*a_lj, init -> end (mean) |",
        "|---|---|---|---|---|",
    ]
    for m, errs in coord["report"].items():
        sm = [c for c in coord.get("smoothing_coef_mean", {}).get(m, []) if c and c["coef_init"] is not None]
        moved = (
            f"{mean([c['coef_init'] for c in sm]):.3f} -> {mean([c['coef_final'] for c in sm]):.3f}" if sm else "n/a"
        )
        lines.append(
            f"| {m} | {coord['best_lr'][m]} | {', '.join(_fmt(e) for e in errs)} | {_fmt(mean(errs))} | {moved} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--parts", nargs="+", choices=("basic", "structure"), default=["basic", "structure"])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if "structure" in args.parts:
        record_structure(args.quick)
    if "basic" not in args.parts:
        return 0
    seeds = [1] if args.quick else [1, 2, 3]
    mults = [1.0, 300.0] if args.quick else [1.0, 30.0, 100.0, 300.0]
    lams = [1e-2] if args.quick else [1e-3, 3e-3, 1e-2]
    filt = run_filter_grid(seeds, mults, lams)
    coord = run_coordinator_study(
        [0] if args.quick else [0, 1, 2, 3],
        [10] if args.quick else [10, 11, 12],
        [1e-2, 3e-2] if args.quick else [3e-3, 1e-2, 3e-2, 1e-1],
    )
    md = markdown(filt, coord)
    print(md)
    if not args.quick:
        record_result(
            "planted_problems",
            "Planted problems: IB filter and coordinator",
            {"filter": filt, "coordinator": coord},
            md,
            command="python -m experiments.planted",
            seeds=seeds,
        )
    return 0


def record_structure(quick: bool) -> None:
    """(c) + (d) -> docs/results/planted_structure.json (printed only with --quick)."""
    from .planted_hard import REPORT, coupling_study, filter_study
    from .planted_hard import markdown as hard_markdown

    coupling, filt = coupling_study(quick), filter_study(quick)
    md = hard_markdown(coupling, filt)
    print(md)
    if not quick:
        record_result(
            "planted_structure",
            "Planted problems a fixed rule cannot pass: heterogeneous coupling, filter vs a norm threshold",
            {"coupling": coupling, "filter": filt, "gnn_revision": GNN_REVISION},
            md,
            command="python -m experiments.planted --parts structure",
            seeds=list(REPORT),
        )


if __name__ == "__main__":
    raise SystemExit(main())
