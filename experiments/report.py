"""Turn a table's cached run results into numbers, claims and a markdown table (never typed by hand)."""

from __future__ import annotations

import re
from typing import Any

from .claim_pairs import COMPARISONS, MATCHED
from .stats import diff_std, holm, mde_paired, paired_ttest, summarize, tost_paired, verdict
from .suite import METRIC_LABEL, SuiteConfig
from .tables import Table


def per_seed(row: dict[str, Any], task: str, quantity: str) -> dict[int, float]:
    """score = test score; val = validation score; else a geometry key (drift_energy, cos_adj)."""
    runs = row["tasks"][task]["runs"]
    if quantity in ("score", "val"):
        split = "test" if quantity == "score" else "val"
        return {s: r[split]["score"] for s, r in runs.items() if r[split]["score"] is not None}
    return {s: r["geometry"][quantity] for s, r in runs.items()}


def lora_reference(table: Table, label: str, rows: dict[str, Any]) -> str | None:
    """LoRA row to test against: same x value for curve tables, plain LoRA otherwise."""
    v = rows[label]["variant"]
    if table.curve:
        x = getattr(v, table.curve)
        for lab, row in rows.items():
            if row["variant"].method == "lora" and getattr(row["variant"], table.curve) == x:
                return lab
        return None
    return "LoRA" if "LoRA" in rows else None


def comparisons(table: Table, rows: dict[str, Any], tasks: list[str]) -> list[tuple[str, str, str, int]]:
    """The paper's claims of this table that the run can test; else each variant vs LoRA (quick runs)."""
    if table.curve:
        return [
            (lab, ref, "score", 1)
            for lab in rows
            if rows[lab]["variant"].method == "structlora"
            for ref in [lora_reference(table, lab, rows)]
            if ref
        ]
    specific = [c for c in COMPARISONS.get(table.name, []) if c[0] in rows and c[1] in rows]
    if specific or "LoRA" not in rows:
        return specific
    return [(lab, "LoRA", "score", 1) for lab in rows if lab != "LoRA"]


ALPHA = 0.05
EQUIV_REL = 0.02  # TOST margin: +-2 % of the reference row's mean score (below every relative gain the paper claims)
NOT_RUN = "not run (cache-only record)"


def claims(table: Table, rows: dict[str, Any], tasks: list[str]) -> list[dict[str, Any]]:
    """Every paper claim of the table (family "tuned lr": each method at its own tuned lr) and, for the main
    table, the matched-lr contrasts (family "matched lr"): paired t-tests over seeds, Holm within a family.

    Verdicts use the Holm-adjusted p. ``mde`` is the smallest true difference the test detects with 80 % power
    at the first Holm step (alpha / m, m = tests in the family), from the observed paired std. A score claim
    also gets a TOST equivalence test at +-EQUIV_REL of the reference row's mean: "no difference" is said only
    where it rejects; otherwise a non-significant difference is "not detected"."""
    out = _family(comparisons(table, rows, tasks), rows, tasks, "tuned lr")
    matched = [c for c in MATCHED.get(table.name, []) if c[0] in rows and c[1] in rows]
    return out + _family(matched, rows, tasks, "matched lr")


def _family(pairs: list[tuple[str, str, str, int]], rows: dict[str, Any], tasks: list[str], family: str) -> list:
    out = []
    for a, b, qty, sign in pairs:
        for task in tasks:
            if a not in rows or b not in rows or task not in rows[a]["tasks"] or task not in rows[b]["tasks"]:
                continue
            va, vb = per_seed(rows[a], task, qty), per_seed(rows[b], task, qty)
            test = paired_ttest(va, vb)
            n, sd = diff_std(va, vb)
            ref = summarize(list(vb.values())).mean
            eq = tost_paired(va, vb, EQUIV_REL * abs(ref)) if qty in ("score", "val") and ref == ref else None
            out.append(
                {
                    "a": a,
                    "b": b,
                    "task": task,
                    "quantity": qty,
                    "paper_sign": sign,
                    "family": family,
                    "lr_a": rows[a]["tasks"][task].get("lr"),
                    "lr_b": rows[b]["tasks"][task].get("lr"),
                    "n": test.n,
                    "mean_diff": test.mean_diff,
                    "t": test.t,
                    "p": test.p,
                    "note": test.note,
                    "sd_diff": sd,
                    "tost_margin": None if eq is None else eq.margin,
                    "tost_p": None if eq is None else eq.p,
                }
            )
    m = sum(1 for c in out if c["p"] is not None)
    for c, p_holm in zip(out, holm([c["p"] for c in out])):
        c["p_holm"], c["holm_m"] = p_holm, m
        c["mde"] = mde_paired(c["sd_diff"], c["n"], ALPHA / max(m, 1))
        c["verdict"] = claim_verdict(c)
    return out


def claim_verdict(c: dict[str, Any]) -> str:
    """Plain words: significant (Holm) either way; else "equivalent within +-margin" only when TOST rejects,
    otherwise "not detected" (a non-significant test is never read as "no difference")."""
    p_holm = c["p_holm"]
    if p_holm is None:
        return c["note"]  # identical on every seed, or too few seeds
    eq = c.get("tost_p") is not None and c["tost_p"] < ALPHA
    margin = f"±{c['tost_margin']:.3g}" if c.get("tost_margin") is not None else ""
    tail = f"equivalent within {margin} (TOST)" if eq else f"not detected; equivalence within {margin} not shown"
    if c["quantity"] not in ("score", "val"):
        tail = "difference not detected"
    if c["paper_sign"] == 0:
        return "differ significantly" if p_holm < ALPHA else tail
    v = verdict(c["mean_diff"], p_holm, c["paper_sign"], ALPHA)
    if p_holm >= ALPHA:
        same = c["mean_diff"] * c["paper_sign"] > 0
        v = ("same direction, not significant" if same else "not reproduced") + f" ({tail})"
    return v


def _geom(row: dict[str, Any], task: str, key: str) -> str:
    if task not in row["tasks"] or not row["tasks"][task].get("runs"):
        return "—"
    return summarize(list(per_seed(row, task, key).values())).fmt(3 if key != "drift_energy" else 4)


def shown_quantity(table: Table) -> str:
    """The split a table's cells show: the one its claims test (the defaults table is chosen on validation,
    so it must not show test scores)."""
    qtys = {c[2] for c in COMPARISONS.get(table.name, [])}
    return "val" if qtys == {"val"} else "score"


def markdown(table: Table, result: dict[str, Any], suite: SuiteConfig, claim_rows: list[dict[str, Any]]) -> str:
    rows, tasks = result["rows"], result["tasks"]
    geo = table.name in ("regularizers", "main")
    qty = shown_quantity(table)
    split = "val" if qty == "val" else "test"
    head = ["variant"] + [f"{METRIC_LABEL[t]} {split}" for t in tasks] + ["Δ vs LoRA (p)", "lr"]
    if geo:
        head += [f"drift energy ({tasks[0]})", f"CosAdj ({tasks[0]})"]
    head.append("paper (LLaVA-1.5-7B)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, row in rows.items():
        cells = [label]
        deltas, lrs = [], []
        for t in tasks:
            if t not in row["tasks"]:
                cells.append("—")
                continue
            if row["tasks"][t].get("error"):
                not_run = row["tasks"][t]["error"].startswith("not run")
                cells.append("not run" if not_run else "failed (every lr; see results/*.failed.txt)")
                lrs.append("—")
                continue
            n_failed = sum(1 for r in row["tasks"][t]["runs"].values() if r.get("failed") and r["failed"] != NOT_RUN)
            n_missing = sum(1 for r in row["tasks"][t]["runs"].values() if r.get("failed") == NOT_RUN)
            cells.append(
                summarize(list(per_seed(row, t, qty).values())).fmt(2)
                + (f" ({n_failed} run(s) failed)" if n_failed else "")
                + (f" ({n_missing} seed(s) not run)" if n_missing else "")
            )
            ref = lora_reference(table, label, rows)
            if ref and ref != label:
                deltas.append(paired_ttest(per_seed(row, t, qty), per_seed(rows[ref], t, qty)).fmt())
            lrs.append(f"{row['tasks'][t]['lr']:g}")
        cells += ["; ".join(deltas) or "—", "/".join(lrs)]
        if geo:
            t0 = tasks[0]
            cells += [_geom(row, t0, "drift_energy"), _geom(row, t0, "cos_adj")]
        cells.append(_paper_cell(table, row["variant"], label))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        tuning_line(result, suite),
        "",
        seeds_line(table, result, suite),
        "",
        "Claims (paired two-sided t-test over seeds, Holm-corrected over the table's tests, α = 0.05; "
        "MDE = smallest true difference detected with 80 % power at α/m (exact noncentral t); TOST = paired "
        f'equivalence test at ±{EQUIV_REL:.0%} of the reference row\'s mean, the only ground for "no difference"):',
        "",
    ]
    lines += claim_lines(claim_rows) or ["- no comparison available in this run"]
    return "\n".join(lines)


def _paper_cell(table: Table, variant, label: str) -> str:
    if table.curve:
        fam = "StructLoRA" if variant.method == "structlora" else "LoRA"
        val = table.paper.get(fam, {}).get(getattr(variant, table.curve))
        return "—" if val is None else f"{val}"
    val = table.paper.get(label)
    if isinstance(val, dict):
        return ", ".join(f"{k} {v}" for k, v in val.items())
    return "—" if val is None else str(val)


def tuning_line(result: dict[str, Any], suite: SuiteConfig) -> str:
    parts = []
    for task, fams in result["tuned"].items():
        for fam, tuned in fams.items():
            vals = ", ".join(f"{lr:g}: {s:.2f}" for lr, s in sorted(tuned.val_scores.items()))
            where = "interior optimum" if tuned.interior else "**edge of the grid: not bracketed**"
            parts.append(f"{task}/{fam} → {tuned.lr:g}, {where} (val {vals})")
    return (
        f"lr picked on the validation split (tuning seed {suite.tune_seed}, never reported"
        + (f"; on world seed {suite.tune_world}'s runs, never on this world" if suite.tune_world is not None else "")
        + "; initial grid "
        f"{{{', '.join(f'{x:g}' for x in suite.lr_grid)}}}, grown in the 1-2-5 series while the best lr is at an "
        f"edge; {suite.max_steps} steps x batch {suite.batch_size}): " + "; ".join(parts)
    )


def seeds_line(table: Table, result: dict[str, Any], suite: SuiteConfig) -> str:
    """Which reporting seeds each row has, and from which code state(s) its runs come."""
    by_seeds: dict[tuple, list[str]] = {}
    commits: set[str] = set()
    for label, row in result["rows"].items():
        for d in row["tasks"].values():
            by_seeds.setdefault(tuple(sorted(d["runs"])), []).append(label)
            commits.update(str(r.get("git_commit") or "unrecorded") for r in d["runs"].values())
    parts = [f"{list(s)} for {', '.join(dict.fromkeys(labels))}" for s, labels in by_seeds.items()]
    return f"Reporting seeds (test split): {'; '.join(parts)}. Runs trained at commit(s) {', '.join(sorted(commits))}."


def claim_lines(claim_rows: list[dict[str, Any]]) -> list[str]:
    out, family = [], None
    for c in claim_rows:
        fam = c.get("family", "tuned lr")
        if fam != family and fam == "matched lr":
            out += [
                "",
                f"Matched-lr contrasts (each pair at one shared lr; their own Holm family, m = {c['holm_m']}):",
                "",
            ]
        family = fam
        exp = {1: ">", -1: "<", 0: "="}[c["paper_sign"]]
        stat = f"Δ = {c['mean_diff']:+.4g}" + (
            f", p = {c['p']:.3f}, Holm p = {c['p_holm']:.3f}" if c.get("p_holm") is not None else ""
        )
        if c.get("mde") == c.get("mde"):  # not NaN
            stat += f", MDE {c['mde']:.3g}"
        if c.get("tost_p") is not None:
            stat += f", TOST ±{c['tost_margin']:.3g} p = {c['tost_p']:.3f}"
        if fam == "matched lr" and c.get("lr_a") is not None:
            stat += f", lr {c['lr_a']:g} vs {c['lr_b']:g}"
        out.append(
            f"- {c['task']} {c['quantity']}: paper says {c['a']} {exp} {c['b']}; measured {stat} "
            f"(n={c['n']}) → **{c['verdict']}**"
        )
    return out


def table_data(result: dict[str, Any], claim_rows: list[dict[str, Any]], suite: SuiteConfig) -> dict[str, Any]:
    """Raw numbers for docs/results/<name>.json."""
    rows = {}
    for label, row in result["rows"].items():
        rows[label] = {
            t: {
                "lr": d["lr"],
                "error": d.get("error"),
                "test": per_seed(row, t, "score"),
                "val": {s: r["val"]["score"] for s, r in d["runs"].items()},
                "drift_energy": per_seed(row, t, "drift_energy"),
                "cos_adj": per_seed(row, t, "cos_adj"),
                "run_keys": {s: r["key"] for s, r in d["runs"].items()},
                "train_s": {s: r["train_s"] for s, r in d["runs"].items()},
                "failed": {s: r["failed"] for s, r in d["runs"].items() if r.get("failed")},
            }
            for t, d in row["tasks"].items()
        }
    tuned = {t: {f: {"lr": x.lr, "val": x.val_scores} for f, x in fams.items()} for t, fams in result["tuned"].items()}
    return {
        "suite": suite.to_dict(),
        "rows": rows,
        "tuned": tuned,
        "claims": claim_rows,
        "paper": {k: v for k, v in result["table"].paper.items()},
        "paper_claim": result["table"].claim,
    }


def summary_markdown(records: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """One line per tested paper claim over every table recorded so far (plain verdicts)."""
    lines = [
        "| table | claim (paper) | task | measured Δ (a − b) | p (Holm) | MDE | n | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    counts: dict[str, int] = {}
    for name, rec in sorted(records.items()):
        for c in rec["data"].get("claims", []):
            exp = {1: ">", -1: "<", 0: "="}[c["paper_sign"]]
            p = f"{c['p']:.3f}" if c["p"] is not None else "—"
            p += f" ({c['p_holm']:.3f})" if c.get("p_holm") is not None else ""
            mde = f"{c['mde']:.3g}" if c.get("mde") is not None and c["mde"] == c["mde"] else "—"
            lines.append(
                f"| {name.removeprefix('experiments_')} | {c['a']} {exp} {c['b']} ({c['quantity']}) | "
                f"{c['task']} | {c['mean_diff']:+.3g} | {p} | {mde} | {c['n']} | {c['verdict']} |"
            )
            kind = re.sub(r"±[0-9.e+-]+", "±m", c["verdict"])  # one tally per verdict kind, whatever the margin
            counts[kind] = counts.get(kind, 0) + 1
    tally = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "no claim tested yet"
    from .tables import ORDER

    missing = [t for t in ORDER if f"experiments_{t}" not in records]
    head = [f"Verdicts so far: {tally}.", ""]
    if missing:
        head += [f"Tables not run yet: {', '.join(missing)}.", ""]
    return "\n".join(head + lines), {"verdict_counts": counts, "tables_missing": missing}
