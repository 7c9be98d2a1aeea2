"""Mean ± std over seeds and the paper's paired two-sided t-test against LoRA."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample std (ddof=1); 0 for one seed

    def fmt(self, digits: int = 1) -> str:
        if self.n == 0:
            return "n/a"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def summarize(values: Sequence[float]) -> Summary:
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return Summary(0, float("nan"), float("nan"))
    mean = sum(vals) / len(vals)
    var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1) if len(vals) > 1 else 0.0
    return Summary(len(vals), mean, math.sqrt(var))


@dataclass(frozen=True)
class PairedTest:
    n: int
    mean_diff: float
    t: float | None
    p: float | None
    note: str = ""

    def fmt(self) -> str:
        if self.p is None:
            return self.note or "n/a"
        return f"{self.mean_diff:+.2f} (p={self.p:.3f})"


def paired_ttest(values: dict[int, float], reference: dict[int, float]) -> PairedTest:
    """scipy.stats.ttest_rel over the seeds both runs have (two-sided), as the paper reports."""
    from scipy.stats import ttest_rel

    seeds = sorted(
        s for s in set(values) & set(reference) if _finite(values[s]) and _finite(reference[s])
    )  # failed runs are NaN
    a = [values[s] for s in seeds]
    b = [reference[s] for s in seeds]
    if len(seeds) < 2:
        return PairedTest(len(seeds), float("nan"), None, None, f"n={len(seeds)} paired seeds: no test")
    diffs = [x - y for x, y in zip(a, b)]
    mean_diff = sum(diffs) / len(diffs)
    if max(diffs) == min(diffs):  # zero variance of the differences: t undefined
        note = "identical on every seed" if mean_diff == 0 else f"{mean_diff:+.2f} on every seed (t undefined)"
        return PairedTest(len(seeds), mean_diff, None, None, note)
    res = ttest_rel(a, b)
    return PairedTest(len(seeds), mean_diff, float(res.statistic), float(res.pvalue))


def verdict(diff_mean: float, p: float | None, paper_sign: int = 1, alpha: float = 0.05) -> str:
    """Plain words for one claim: reproduced (same sign, p < alpha), same sign but not significant, or not."""
    if p is None or math.isnan(diff_mean):
        return "not testable"
    if diff_mean * paper_sign > 0 and p < alpha:
        return "reproduced (significant)"
    if diff_mean * paper_sign > 0:
        return "same direction, not significant"
    if p < alpha:
        return "contradicted (significant, opposite sign)"
    return "not reproduced (no significant difference)"


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone); None (untestable) stays None."""
    idx = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    m, out, running = len(idx), [None] * len(pvalues), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def mde_paired(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean difference a two-sided paired t-test over `n` seeds detects with `power`.

    Exact under normal differences: solves P(|T| > t_crit) = power for T ~ noncentral t(n-1, d sqrt(n) / sd)."""
    from scipy.optimize import brentq
    from scipy.stats import nct, t

    if n < 2 or not math.isfinite(sd_diff) or sd_diff <= 0:
        return float("nan")
    df, crit = n - 1, float(t.ppf(1 - alpha / 2, n - 1))

    def gap(d: float) -> float:
        nc = d * math.sqrt(n) / sd_diff
        pw = float(nct.sf(crit, df, nc) + nct.cdf(-crit, df, nc))
        return (1.0 if math.isnan(pw) else pw) - power  # scipy's nct gives NaN far in the tail (power ~ 1)

    hi = sd_diff
    while gap(hi) < 0:
        hi *= 2
    return brentq(gap, 1e-9 * sd_diff, hi)


def diff_std(values: dict[int, float], reference: dict[int, float]) -> tuple[int, float]:
    """(n, sample std) of the per-seed differences over the seeds both have."""
    seeds = [s for s in set(values) & set(reference) if _finite(values[s]) and _finite(reference[s])]
    summ = summarize([values[s] - reference[s] for s in seeds])
    return summ.n, summ.std


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
