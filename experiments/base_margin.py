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


def main(argv: list[str] | None = None) -> None:
    from .eval_data import build_eval_root
    from .plan import run_table
    from .publish import ensure_artifacts, record
    from .report import per_seed
    from .runner import cached
    from .suite import FULL
    from .tables import TABLES

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world-seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import dataclasses

    suite = dataclasses.replace(FULL, world_seed=args.world_seed)
    ensure_artifacts(suite)
    build_eval_root(suite.data_root, suite.out_root / "eval_data", suite.tasks, suite.val_limit, suite.test_limit)

    def only_cached(spec, s):
        hit = cached(spec, s)
        if hit is None:
            raise SystemExit(f"{spec.key(s)} is not cached; run `python -m experiments main` first")
        return hit

    lora_only = dataclasses.replace(TABLES["main"], variants=(TABLES["main"].variants[0],))
    result = run_table(lora_only, suite, only_cached)
    row = result["rows"]["LoRA"]
    data = {
        t: margin(per_seed(row, t, "score"), base_score(suite, t)) | {"lora_lr": row["tasks"][t]["lr"]}
        for t in result["tasks"]
    }
    lines = [
        "| task (test split) | untuned base | LoRA r=8 (tuned lr) | gain | gain / seed std |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {t} ({METRIC[t]}) | {m['base']:.2f} | {m['lora_mean']:.2f} ± {m['lora_std']:.2f} (n={m['n']}, "
        f"lr {m['lora_lr']:g}) | {m['gain']:+.2f} | {m['gain_over_std']:.1f} |"
        for t, m in data.items()
    ]
    md = "\n".join(lines) + (
        f"\n\nBar: >= {BAR:g}. {suite.max_steps} steps x batch {suite.batch_size}; CIDEr x100, "
        "VQA = official accuracy (%), GQA = exact match (%)."
    )
    fam_md, data["families"] = family_tables(suite, row, result["tasks"])
    md += fam_md
    record(
        "experiments_base_margin",
        "Experiment: the untuned base vs LoRA (can the testbed tell?)",
        data,
        md,
        suite,
        "python -m experiments.base_margin" + (f" --world-seed {args.world_seed}" if args.world_seed else ""),
    )
    print(md)


if __name__ == "__main__":
    main()
