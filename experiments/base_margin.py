"""Is there room to fine-tune? The untuned base's score per endpoint, and LoRA's margin over it.

    python -m experiments.base_margin [--world-seed N]

`base_score` evaluates the suite's base snapshot (no adapter) on a derived split with the real
evaluation code, cached beside the run cache (keyed by the artifacts' fingerprint). `margin` turns
a LoRA row of any table into the testbed check of the gain over the base in units of the
paired seed std (the base is deterministic, so the paired std is the std of LoRA's seeds). A table
can only tell methods apart where this is large (>= 10 is the bar). The CLI records
``experiments_base_margin`` from the main table's cached LoRA runs (run ``python -m experiments main``).
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from llava_structlora.utils.io import atomic_write_json

from .stats import summarize
from .suite import METRIC, METRIC_SCALE, SuiteConfig, artifacts_fingerprint

logger = logging.getLogger("experiments")
BAR = 10.0  # LoRA's gain over the base must be >= BAR paired seed stds for a table to discriminate


def base_score(suite: SuiteConfig, task: str, split: str = "test") -> float:
    """Headline score of the untuned base on `split` (cached)."""
    from llava_structlora.evaluation.config import EvalConfig
    from llava_structlora.evaluation.run import evaluate

    fp = artifacts_fingerprint(suite)
    path = suite.out_root / "base_eval" / f"{task}-{split}.json"
    if path.exists():
        rec = json.loads(path.read_text())
        if rec.get("fingerprint") == fp and rec.get("limits") == [suite.val_limit, suite.test_limit]:
            return rec["score"]
    cfg = EvalConfig(
        task=task,
        model=str(suite.base_dir),
        data_root=str(suite.out_root / "eval_data"),
        split=split,
        output_dir=str(suite.out_root / "base_eval" / f"{task}-{split}"),
        overwrite=True,
        meteor=False,
        batch_size=suite.eval_batch_size,
    )
    score = float(evaluate(cfg)[METRIC[task]]) * METRIC_SCALE[task]
    atomic_write_json(path, {"score": score, "fingerprint": fp, "limits": [suite.val_limit, suite.test_limit]})
    return score


def margin(lora_scores: dict[int, float], base: float) -> dict[str, Any]:
    """LoRA's gain over the base in paired-std units (n, gain, std, ratio, passes the bar)."""
    s = summarize(list(lora_scores.values()))
    ratio = (s.mean - base) / s.std if s.n > 1 and s.std > 0 else float("nan")
    return {
        "base": base,
        "lora_mean": s.mean,
        "lora_std": s.std,
        "n": s.n,
        "gain": s.mean - base,
        "gain_over_std": ratio,
        "passes": bool(ratio >= BAR),
    }


def margin_markdown(margins: dict[str, dict[str, Any]]) -> str:
    if not margins:
        return "Testbed check: no plain-LoRA row in this table."
    cells = [
        f"{t} {m['gain']:+.2f} over base {m['base']:.2f} = {m['gain_over_std']:.1f} seed std (n={m['n']}"
        f"{'' if m['passes'] else f'; below the {BAR:g}x bar'})"
        for t, m in margins.items()
    ]
    return "Testbed check (LoRA r=8 vs the untuned base, test split): " + "; ".join(cells) + "."


def family_tables(suite: SuiteConfig, row: dict[str, Any], tasks) -> tuple[str, dict[str, Any]]:
    """Per-family diagnosis of the QA endpoints (experiments/families.py) from the cached answers."""
    from . import families
    from .plan import spec_for
    from .runner import run_dir

    md, data = "", {}
    for t in [t for t in tasks if t in families.TASKS]:
        lr, seeds = row["tasks"][t]["lr"], sorted(row["tasks"][t]["runs"])
        lora = [run_dir(spec_for(row["variant"], t, s, lr), suite) / "eval_test" / "results.json" for s in seeds]
        base = suite.out_root / "base_eval" / f"{t}-test" / "results.json"
        data[t] = families.table(suite.data_root, suite.out_root / "eval_data", t, base, lora)
        md += "\n\n" + families.markdown(t, data[t], len(lora))
    return md, data


def world_margins(suite: SuiteConfig) -> tuple[dict[str, Any], str]:
    """Margins of one world from its cached main-table LoRA runs (a task without them is 'not run')."""
    import dataclasses

    from .__main__ import cache_only
    from .eval_data import build_eval_root
    from .plan import run_table
    from .publish import ensure_artifacts
    from .report import per_seed
    from .tables import TABLES

    ensure_artifacts(suite)
    build_eval_root(suite.data_root, suite.out_root / "eval_data", suite.tasks, suite.val_limit, suite.test_limit)
    lora_only = dataclasses.replace(TABLES["main"], variants=(TABLES["main"].variants[0],))
    result = run_table(lora_only, suite, cache_only)
    row = result["rows"]["LoRA"]
    data: dict[str, Any] = {}
    for t in result["tasks"]:
        scores = (
            {s: v for s, v in per_seed(row, t, "score").items() if v == v} if not row["tasks"][t].get("error") else {}
        )
        if len(scores) < 2:
            data[t] = {"not_run": True}
            continue
        data[t] = margin(scores, base_score(suite, t)) | {"lora_lr": row["tasks"][t]["lr"]}
    lines = [
        "| task (test split) | untuned base | LoRA r=8 (tuned lr) | gain | gain / seed std |",
        "|---|---|---|---|---|",
    ]
    for t, m in data.items():
        if m.get("not_run"):
            lines.append(f"| {t} ({METRIC[t]}) | — | not run | — | — |")
            continue
        lines.append(
            f"| {t} ({METRIC[t]}) | {m['base']:.2f} | {m['lora_mean']:.2f} ± {m['lora_std']:.2f} (n={m['n']}, "
            f"lr {m['lora_lr']:g}) | {m['gain']:+.2f} | {m['gain_over_std']:.1f} |"
        )
    done = [t for t in data if not data[t].get("not_run")]
    fam_row = {  # only finished runs (a cache-only pass marks the others 'not run')
        **row,
        "tasks": {t: {**row["tasks"][t], "runs": _finished(row["tasks"][t]["runs"])} for t in done},
    }
    fam_md, data["families"] = family_tables(suite, fam_row, done)
    return data, "\n".join(lines) + fam_md


def _finished(runs: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {s: r for s, r in runs.items() if not r.get("failed")}


def lora_rank_markdown(suite: SuiteConfig) -> tuple[dict[str, Any], str]:
    """Does the rank change LoRA's score on this testbed? The lora_rank table's cached runs (COCO)."""
    from .__main__ import cache_only
    from .plan import run_table
    from .report import claims, per_seed
    from .tables import TABLES

    result = run_table(TABLES["lora_rank"], suite, cache_only)
    rows = {lab: r for lab, r in result["rows"].items() if "coco" in r["tasks"] and r["tasks"]["coco"].get("runs")}
    cells = {}
    for lab, r in rows.items():
        vals = [v for v in per_seed(r, "coco", "score").values() if v == v]
        cells[lab] = summarize(vals)
    claim_rows = claims(TABLES["lora_rank"], rows, ["coco"])
    md = "LoRA's COCO CIDEr by rank (same lr, reporting seeds): " + "; ".join(
        f"{lab.replace('LoRA rank=', 'r=').replace('LoRA', 'r=8')}: {c.fmt(1)} (n={c.n})" for lab, c in cells.items()
    )
    from .report import claim_lines

    md += ". Each rank vs r = 8 (paired, Holm over the ranks):\n\n" + "\n".join(claim_lines(claim_rows))
    return {"rows": {lab: dict(vars(c)) for lab, c in cells.items()}, "claims": claim_rows}, md


def main(argv: list[str] | None = None) -> None:
    import dataclasses

    from .publish import record
    from .suite import SUITES

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", choices=("full", "deep"), default="full")
    ap.add_argument("--world-seed", type=int, nargs="+", default=[0], help="one record over these worlds")
    ap.add_argument("--tune-world", type=int, help="lrs picked on this world's tuning runs only")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    base = SUITES[args.suite]
    worlds = list(dict.fromkeys(args.world_seed))
    data, parts = {}, []
    for w in worlds:
        suite = dataclasses.replace(base, world_seed=w, tune_world=args.tune_world)
        d, md = world_margins(suite)
        tuned = "" if args.tune_world in (None, w) else f" (lr tuned on world {args.tune_world}, never on this one)"
        data[str(w)] = d
        parts.append(f"**World seed {w}**{tuned}\n\n{md}" if len(worlds) > 1 else md)
    first = dataclasses.replace(base, world_seed=worlds[0], tune_world=args.tune_world)
    if len(worlds) == 1:
        data = data[str(worlds[0])]
    else:
        data["passes_everywhere"] = all(
            m.get("passes", False) for d in data.values() for t, m in d.items() if t != "families"
        )
    md = "\n\n".join(parts) + (
        f"\n\nBar: >= {BAR:g}. {base.max_steps} steps x batch {base.batch_size}; CIDEr x100, "
        "VQA = official accuracy (%), GQA = exact match (%)."
    )
    if args.suite == "deep":
        rank_data, rank_md = lora_rank_markdown(first)
        data = {"worlds": data, "lora_rank": rank_data} if len(worlds) > 1 else data | {"lora_rank": rank_data}
        md += "\n\n" + rank_md
    cmd = "python -m experiments.base_margin" + (f" --suite {args.suite}" if args.suite != "full" else "")
    cmd += f" --world-seed {' '.join(map(str, worlds))}" if worlds != [0] else ""
    cmd += f" --tune-world {args.tune_world}" if args.tune_world is not None else ""
    record(
        "experiments_base_margin", "Experiment: the untuned base vs LoRA (can the testbed tell?)", data, md, first, cmd
    )
    print(md)


if __name__ == "__main__":
    main()
