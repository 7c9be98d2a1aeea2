"""What every table must show before it is read: can it tell, and did anything move?

- the LoRA-vs-base margin per endpoint in paired-std units (experiments.base_margin; bar 10x);
- the minimum detectable effect of its comparisons (report.claims, 80 % power, paired, Holm's alpha/m);
- the median |change of the eval gates| of each StructLoRA row (did the filter do anything?).
"""

from __future__ import annotations

import statistics
from typing import Any

from .report import per_seed
from .suite import SuiteConfig
from .tables import Table


def plain_lora_row(result: dict[str, Any]) -> dict[str, Any] | None:
    """The table's LoRA r=8 full-data row without overrides (the testbed reference), if it has one."""
    for row in result["rows"].values():
        v = row["variant"]
        if v.method == "lora" and not v.overrides and v.rank == 8 and v.data_fraction == 1.0:
            return row
    return None


def gate_moves(run: dict[str, Any]) -> dict[str, float] | None:
    """The what-moved summary of one StructLoRA run: |delta eval gate| median/mean, |delta gate parameter|
    median (its own units: log alpha for hard concrete), and the fraction of directions open at the end."""
    moved = run.get("what_moved") or {}
    delta = moved.get("eval_gate_delta") or {}
    if delta.get("median_abs") is None:
        return None
    params = moved.get("gate_param_delta") or {}
    first = next(iter(params.values()), {})
    return {
        "median_abs_delta_eval_gate": float(delta["median_abs"]),
        "mean_abs_delta_eval_gate": delta.get("mean_abs"),
        "median_abs_delta_gate_param": first.get("median_abs"),
        "open_fraction_end": (moved.get("open_fraction") or {}).get("final"),
        "median_abs_delta_smoothing_coef": (moved.get("smoothing") or {}).get("median_abs_delta"),
    }


def gate_shift(run: dict[str, Any]) -> tuple[float | None, str]:
    """Median |eval gate at the end - eval gate at init| over every gate of one run, and its source.

    Prefers the what-moved record (exact init); else the first vs the last diagnostics record (the first
    is logged after `diagnostics_steps` steps, so it underestimates the movement)."""
    moves = gate_moves(run)
    if moves is not None:
        return moves["median_abs_delta_eval_gate"], "what-moved record"
    moved = run.get("what_moved") or {}
    init, end = moved.get("eval_gates_init"), moved.get("eval_gates_end")
    src = "what-moved record"
    if not (init and end):
        diag = run.get("structlora_diagnostics") or {}
        init, end = diag.get("first_gate_values"), diag.get("gate_values")
        src = f"diagnostics step {diag.get('first_step')} -> end"
    if not (init and end):
        return None, "no gate record"
    deltas = [abs(b - a) for name in end if name in init for a, b in zip(init[name], end[name])]
    return (statistics.median(deltas) if deltas else None), src


def row_gate_shift(row: dict[str, Any], task: str) -> tuple[float | None, str, dict[str, float]]:
    """Median over seeds of the per-run median |delta eval gate| (+ the medians of the other what-moved numbers)."""
    vals, srcs, more = [], set(), {}
    for run in row["tasks"][task]["runs"].values():
        v, src = gate_shift(run)
        if v is not None:
            vals.append(v)
            srcs.add(src)
        for k, x in (gate_moves(run) or {}).items():
            if x is not None:
                more.setdefault(k, []).append(x)
    extra = {k: statistics.median(xs) for k, xs in more.items()}
    return (statistics.median(vals) if vals else None), ", ".join(sorted(srcs)), extra


def table_extras(
    table: Table, result: dict[str, Any], suite: SuiteConfig, claim_rows: list[dict[str, Any]]
) -> tuple[str, dict[str, Any]]:
    """Markdown paragraph + JSON data: margins, MDEs, gate movement."""
    from .base_margin import base_score, margin, margin_markdown

    lora = plain_lora_row(result)
    margins = {}
    if lora is not None:
        for task in result["tasks"]:
            if task in lora["tasks"] and lora["tasks"][task]["runs"]:
                margins[task] = margin(per_seed(lora, task, "score"), base_score(suite, task))
    gates, smoothing = {}, {}
    for label, row in result["rows"].items():
        if row["variant"].method == "structlora":
            for task in row["tasks"]:
                if row["tasks"][task].get("runs"):
                    v, src, extra = row_gate_shift(row, task)
                    gates.setdefault(label, {})[task] = {**extra, "median_abs_delta_eval_gate": v, "source": src}
                    if sm := smoothing_end(row, task):
                        smoothing.setdefault(label, {})[task] = sm
    mdes = {f"{c['a']} vs {c['b']} ({c['task']}, {c['quantity']})": c["mde"] for c in claim_rows}
    lines = [margin_markdown(margins)]
    if claim_rows:
        m = claim_rows[0]["holm_m"]
        score = [
            c["mde"]
            for c in claim_rows
            if c["quantity"] == "score" and c["mde"] == c["mde"] and c.get("family", "tuned lr") == "tuned lr"
        ]
        if score:
            lines.append(
                f"MDE of the score comparisons (80 % power, paired, α = 0.05/{m}): "
                f"{min(score):.3g} to {max(score):.3g} (per claim below)."
            )
    if gates:
        lines.append(gate_markdown(gates))
    data = {"margins": margins, "gate_shift": gates, "mde": mdes, "smoothing_end": smoothing}
    if smoothing:
        lines.append(smoothing_markdown(smoothing))
        data["smoothing_structure"] = {
            lab: {t: smoothing_structure(v) for t, v in ts.items()} for lab, ts in smoothing.items()
        }
    if table.curve == "data_fraction":
        data["lora_data_effect"] = lora_data_effect(result)
        lines.append(lora_data_markdown(data["lora_data_effect"]))
    if table.curve == "rank":
        data["lora_rank_effect"] = lora_data_effect(result, "rank", 8)
        lines.append(lora_rank_markdown(data["lora_rank_effect"]))
    if table.name in MECHANICAL_TABLES:
        from .mechanical import mechanical_cos_adj, mechanical_markdown

        data["mechanical_cos_adj"] = mechanical_cos_adj(suite.base_dir, suite.seeds_for(table.headline))
        trained = {}
        for label, row in result["rows"].items():
            task = result["tasks"][0]
            if task in row["tasks"] and row["tasks"][task].get("runs"):
                vals = [v for v in per_seed(row, task, "cos_adj").values() if v == v]
                if vals:
                    trained[label] = statistics.mean(vals)
        lines.append(mechanical_markdown(data["mechanical_cos_adj"], trained))
    return "\n\n".join(lines), data


MECHANICAL_TABLES = ("regularizers", "ablation")


def smoothing_end(row: dict[str, Any], task: str) -> dict[str, Any]:
    """Per seed, the coordinator's smoothing coefficient eta * a_lj per edge at init and at the end ({} without one)."""
    out = {}
    for seed, run in row["tasks"][task]["runs"].items():
        sm = (run.get("what_moved") or {}).get("smoothing")
        if sm and sm.get("coef_final"):
            out[str(seed)] = {"init": sm["coef_init"], "final": sm["coef_final"]}
    return out


def smoothing_markdown(smoothing: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One line: per row and task, the mean eta * a_lj at init and end and the largest edge's share at the end."""

    def cell(per_seed: dict[str, Any]) -> str:
        init = [statistics.mean(v["init"].values()) for v in per_seed.values()]
        end = [statistics.mean(v["final"].values()) for v in per_seed.values()]
        absf = [[abs(x) for x in v["final"].values()] for v in per_seed.values()]  # a measured coupling may be < 0
        share = [max(a) / max(sum(a), 1e-12) for a in absf]
        n_edges = len(next(iter(per_seed.values()))["final"])
        return (
            f"mean η·a {statistics.median(init):.3g} → {statistics.median(end):.3g}, largest edge's share "
            f"{statistics.median(share):.2f} (of {n_edges} edges; uniform {1 / n_edges:.2f})"
        )

    cells = [f"{lab}: {t} {cell(v)}" for lab, ts in smoothing.items() for t, v in ts.items()]
    head = "Coordinator smoothing, init → end, median over seeds (per-seed edges in the JSON): "
    lines = head + "; ".join(cells) + "."
    struct = [
        f"{lab}: {t} {st['effective_edges_init']:.2f} → {st['effective_edges_end']:.2f} of {st['n_edges']}"
        + ("" if st["cross_seed_rho"] is None else f", cross-seed ρ {st['cross_seed_rho']:+.2f}")
        for lab, ts in smoothing.items()
        for t, v in ts.items()
        for st in [smoothing_structure(v)]
    ]
    return (
        lines + " Effective number of smoothing edges (exp entropy of |η·a| normalised over the edges; median over "
        "seeds) and the mean pairwise Spearman ρ of the final edge weights across seeds: " + "; ".join(struct) + "."
    )


def smoothing_structure(per_seed: dict[str, Any]) -> dict[str, Any]:
    """Collapse and reproducibility of one row's learned smoothing: effective edges at init and end (median over
    seeds) and the mean pairwise Spearman rho of the final per-edge weights across seeds (None: < 2 seeds, or
    constant weights)."""
    import itertools

    from llava_structlora.structlora.planted_hard import effective_edges

    from .planted_hard import spearman

    edges = sorted({e for v in per_seed.values() for e in v["final"]})  # a similarity graph may differ per seed
    init = [effective_edges(list(v["init"].values())) for v in per_seed.values()]
    end = [effective_edges(list(v["final"].values())) for v in per_seed.values()]
    finals = [[v["final"].get(e, 0.0) for e in edges] for v in per_seed.values()]
    rhos = [r for a, b in itertools.combinations(finals, 2) if (r := spearman(a, b)) is not None]
    return {
        "effective_edges_init": statistics.median(init),
        "effective_edges_end": statistics.median(end),
        "n_edges": len(edges),
        "cross_seed_rho": statistics.mean(rhos) if rhos else None,
    }


def gate_markdown(gates: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One line: per StructLoRA row, what its gates did (medians over seeds)."""

    def cell(g: dict[str, Any]) -> str:
        if g["median_abs_delta_eval_gate"] is None:
            return "n/a"
        out = f"{g['median_abs_delta_eval_gate']:.3g}"
        if g.get("mean_abs_delta_eval_gate") is not None:
            out += f" (mean {g['mean_abs_delta_eval_gate']:.3g}"
            if g.get("median_abs_delta_gate_param") is not None:
                out += f"; |Δ gate param| {g['median_abs_delta_gate_param']:.3g}"
            if g.get("open_fraction_end") is not None:
                out += f"; open at end {g['open_fraction_end']:.2f}"
            if g.get("median_abs_delta_smoothing_coef") is not None:
                out += f"; |Δ smoothing coef| {g['median_abs_delta_smoothing_coef']:.3g}"
            out += ")"
        return out

    cells = [f"{lab}: {t} {cell(g)}" for lab, ts in gates.items() for t, g in ts.items()]
    srcs = sorted({g["source"] for ts in gates.values() for g in ts.values()})
    return (
        "Gate movement, init → end, median over seeds (|Δ eval gate| median (mean; |Δ gate parameter| in its "
        "own units; fraction of directions open at the end; |Δ eta a_lj| of the coordinator's smoothing edges); "
        + "; ".join(srcs)
        + "): "
        + "; ".join(cells)
        + "."
    )


def lora_data_effect(result: dict[str, Any], attr: str = "data_fraction", ref: float = 1.0) -> dict[str, Any]:
    """The curve table's testbed check: LoRA at each x (data fraction, rank) vs LoRA at ``ref`` (paired by seed,
    not in the Holm family of the StructLoRA claims), in score units and in units of LoRA-at-ref's seed std."""
    from .stats import paired_ttest

    task = result["tasks"][0]
    lora = {getattr(r["variant"], attr): r for r in result["rows"].values() if r["variant"].method == "lora"}
    if ref not in lora or not lora[ref]["tasks"][task].get("runs"):
        return {}
    full = per_seed(lora[ref], task, "score")
    sd = statistics.stdev(full.values()) if len(full) > 1 else float("nan")
    out = {}
    for f, row in sorted(lora.items()):
        if f != ref and row["tasks"][task].get("runs"):
            test = paired_ttest(per_seed(row, task, "score"), full)
            out[f"{f:g}"] = {"mean_diff": test.mean_diff, "p": test.p, "n": test.n, "in_seed_std": test.mean_diff / sd}
    return out


def lora_rank_markdown(effect: dict[str, Any]) -> str:
    if not effect:
        return "Does the rank change LoRA's score? Not measured (no LoRA run at r = 8)."
    cells = [
        f"r = {r}: {e['mean_diff']:+.1f} ({e['in_seed_std']:+.1f} seed std, paired p = {e['p']:.2g}, n={e['n']})"
        if e["p"] is not None
        else f"r = {r}: {e['mean_diff']:+.1f} (n={e['n']}, no test)"
        for r, e in effect.items()
    ]
    return "Does the rank change LoRA's score? LoRA at each rank minus LoRA at r = 8: " + "; ".join(cells) + "."


def lora_data_markdown(effect: dict[str, Any]) -> str:
    if not effect:
        return "Does the data fraction change LoRA's score? Not measured (no LoRA run at 100 %)."
    cells = [
        f"{float(f):.0%}: {e['mean_diff']:+.1f} ({e['in_seed_std']:+.1f} seed std, paired p = {e['p']:.2g}, n={e['n']})"
        if e["p"] is not None
        else f"{float(f):.0%}: {e['mean_diff']:+.1f} (n={e['n']}, no test)"
        for f, e in effect.items()
    ]
    return (
        "Does the data fraction change LoRA's score? LoRA at each fraction minus LoRA at 100 %: "
        + "; ".join(cells)
        + "."
    )
