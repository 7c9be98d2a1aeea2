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


def paired_power(d: float, sd_diff: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired t-test over `n` seeds at true mean difference `d` (normal differences).

    Integrates the noncentral t exactly over the chi-square of the sample variance,
    ``P(|T| > c) = E_V[Phi(nc - c sqrt(V/df)) + Phi(-nc - c sqrt(V/df))]``, instead of calling scipy's
    ``nct.cdf``, which returns NaN far in the lower tail (scipy 1.17 at df = 2, nc ~ 14): treating that NaN
    as power 1 stopped the root finder early and under-stated every 3-seed MDE by a factor of ~3."""
    from scipy.integrate import quad
    from scipy.stats import chi2, norm, t

    df = n - 1
    crit = float(t.ppf(1 - alpha / 2, df))
    nc = abs(d) * math.sqrt(n) / sd_diff

    def integrand(v: float) -> float:
        s = crit * math.sqrt(v / df)
        return (float(norm.sf(s - nc)) + float(norm.cdf(-nc - s))) * float(chi2.pdf(v, df))

    lo, hi = chi2.ppf(1e-12, df), chi2.ppf(1 - 1e-12, df)
    mid = float(df)  # the density's bulk: quad is told where it is so it never steps over it
    val = quad(integrand, lo, mid, limit=200)[0] + quad(integrand, mid, hi, limit=200)[0]
    return min(1.0, max(0.0, val))


def mde_paired(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true mean difference a two-sided paired t-test over `n` seeds detects with `power`.

    Exact under normal differences (paired_power); the power is monotone in d, so a bracket + brentq finds it."""
    from scipy.optimize import brentq

    if n < 2 or not math.isfinite(sd_diff) or sd_diff <= 0:
        return float("nan")

    def gap(d: float) -> float:
        return paired_power(d, sd_diff, n, alpha) - power

    hi = sd_diff
    while gap(hi) < 0:
        hi *= 2
    return brentq(gap, 1e-9 * sd_diff, hi, xtol=1e-6 * sd_diff)


@dataclass(frozen=True)
class Equivalence:
    """Paired TOST (two one-sided t-tests) against the margin +-``margin``: equivalent iff ``p < alpha``."""

    margin: float
    p: float | None

    def equivalent(self, alpha: float = 0.05) -> bool:
        return self.p is not None and self.p < alpha


def tost_paired(values: dict[int, float], reference: dict[int, float], margin: float) -> Equivalence:
    """TOST over the paired seeds: H0 |mean diff| >= margin; p = the larger of the two one-sided p-values.

    "No difference" may be claimed only where this rejects (Schuirmann 1987); a non-significant t-test alone
    says only that a difference was not detected."""
    from scipy.stats import t

    seeds = [s for s in set(values) & set(reference) if _finite(values[s]) and _finite(reference[s])]
    if len(seeds) < 2 or not (margin > 0):
        return Equivalence(margin, None)
    diffs = [values[s] - reference[s] for s in seeds]
    summ = summarize(diffs)
    if summ.std == 0:  # identical differences: equivalent iff inside the margin
        return Equivalence(margin, 0.0 if abs(summ.mean) < margin else 1.0)
    se, df = summ.std / math.sqrt(summ.n), summ.n - 1
    p_low = float(t.sf((summ.mean + margin) / se, df))  # H0: diff <= -margin
    p_high = float(t.cdf((summ.mean - margin) / se, df))  # H0: diff >= +margin
    return Equivalence(margin, max(p_low, p_high))


def diff_std(values: dict[int, float], reference: dict[int, float]) -> tuple[int, float]:
    """(n, sample std) of the per-seed differences over the seeds both have."""
    seeds = [s for s in set(values) & set(reference) if _finite(values[s]) and _finite(reference[s])]
    summ = summarize([values[s] - reference[s] for s in seeds])
    return summ.n, summ.std


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)
