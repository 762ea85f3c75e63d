"""The statistics of behavioral reproduction, on SciPy.

Inputs are per-case mean scores of two runs over the same cases, paired by case. Every function
works on the last axis, so a test can simulate thousands of comparisons in one call:

- :func:`mean_difference_ci`: bootstrap (BCa) confidence interval of the mean paired difference;
- :func:`paired_permutation_pvalue`: permutation test on paired scores (swapping within pairs);
- :func:`mcnemar_exact_pvalue`: McNemar's exact test for pass/fail scores (a binomial test on the
  discordant pairs);
- :func:`tost`: equivalence by two one-sided paired t-tests against ``±margin``;
- :func:`cases_needed` / :func:`repeats_needed`: the sample-size guard.

The guard. A TOST on few cases can pass by luck when the runs happen to agree; so equivalence is
claimed only when the number of cases reaches what an 80%-power TOST needs at this margin, given
the observed variance of the paired differences. That variance is floored by the disagreement
rate the cases cannot rule out (the one-sided 95% bound when no case disagreed: about 3/n, the
"rule of three"), so identical results on 20 cases never prove a 2-point margin.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from tether.components.textdiff import plural

ALPHA = 0.05
POWER = 0.80
REPRODUCED = "REPRODUCED"
NOT_REPRODUCED = "NOT REPRODUCED"
INCONCLUSIVE = "INCONCLUSIVE"
MAX_CASES = 10**12


def _rows(values: Any) -> tuple[np.ndarray, bool]:
    array = np.asarray(values, dtype=float)
    return np.atleast_2d(array), array.ndim == 1


def _out(values: np.ndarray, single: bool) -> Any:
    return float(values[0]) if single else values


def _batch(n_resamples: int, rows: int, n: int) -> int:
    """Resamples per batch so a vectorized batch holds about 4 million values (bounded memory)."""
    return max(1, min(n_resamples, 4_000_000 // max(1, rows * n)))


def mean_difference_ci(
    diff: Any, confidence: float = 0.95, n_resamples: int = 9999, rng: Any = None
) -> tuple[Any, Any]:
    """Bootstrap (BCa) interval of the mean of paired differences; exact when all are equal."""
    d, single = _rows(diff)
    mean = d.mean(axis=-1)
    low, high = mean.copy(), mean.copy()
    varied = np.ptp(d, axis=-1) > 0
    if varied.any() and d.shape[-1] > 1:
        sub = d[varied]
        generator = np.random.default_rng(rng)
        batch = _batch(n_resamples, sub.shape[0], sub.shape[-1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.bootstrap(
                (sub,), np.mean, n_resamples=n_resamples, vectorized=True, axis=-1,
                confidence_level=confidence, method="BCa", rng=generator, batch=batch,
            )
            sub_low = np.atleast_1d(result.confidence_interval.low).astype(float)
            sub_high = np.atleast_1d(result.confidence_interval.high).astype(float)
            broken = ~(np.isfinite(sub_low) & np.isfinite(sub_high))
            if broken.any():  # BCa needs some spread in the jackknife; the percentile method does not
                fallback = stats.bootstrap(
                    (sub[broken],), np.mean, n_resamples=n_resamples, vectorized=True, axis=-1,
                    confidence_level=confidence, method="percentile", rng=generator, batch=batch,
                )
                sub_low[broken] = fallback.confidence_interval.low
                sub_high[broken] = fallback.confidence_interval.high
        low[varied], high[varied] = sub_low, sub_high
    return _out(low, single), _out(high, single)


def paired_permutation_pvalue(a: Any, b: Any, n_resamples: int = 9999, rng: Any = None) -> Any:
    """Two-sided p-value of "no difference" by permuting within pairs (the sign of each difference)."""
    left, single = _rows(a)
    right, _ = _rows(b)

    def statistic(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        return np.mean(x - y, axis=axis)

    batch = _batch(n_resamples, *left.shape)
    result = stats.permutation_test(
        (left, right), statistic, permutation_type="samples", vectorized=True, n_resamples=n_resamples,
        alternative="two-sided", axis=-1, rng=np.random.default_rng(rng), batch=batch,
    )
    return _out(np.minimum(np.atleast_1d(result.pvalue).astype(float), 1.0), single)


def mcnemar_exact_pvalue(a_pass: Any, b_pass: Any) -> tuple[Any, Any, Any]:
    """(p-value, cases only A passed, cases only B passed): the exact binomial test on discordant pairs."""
    left, single = _rows(a_pass)
    right, _ = _rows(b_pass)
    only_a = np.sum((left >= 0.5) & (right < 0.5), axis=-1)
    only_b = np.sum((left < 0.5) & (right >= 0.5), axis=-1)
    pvalues = np.array([
        1.0 if x + y == 0 else float(stats.binomtest(int(y), int(x + y), 0.5).pvalue)
        for x, y in zip(only_a, only_b, strict=True)
    ])
    if single:
        return float(pvalues[0]), int(only_a[0]), int(only_b[0])
    return pvalues, only_a, only_b


def tost(diff: Any, margin: float, alpha: float = ALPHA) -> tuple[Any, Any, Any]:
    """(p-value, low, high) of two one-sided paired t-tests of ``|mean difference| < margin``.

    ``low``/``high`` is the matching (1 - 2 alpha) interval: equivalence holds at level alpha
    exactly when it lies inside ``(-margin, margin)``.

    When every difference is the same ``c`` the t-test would claim zero uncertainty, yet ``n`` equal
    differences cannot rule out that a share ``1 - alpha ** (1/n)`` (about 3/n) of cases differs.
    Scores lie in [0, 1], so differences lie in [-1, 1], and Markov's inequality gives exact bounds
    instead: ``P(d >= c) <= (1 - margin) / (1 + c)`` when the mean is ``-margin``.
    """
    d, single = _rows(diff)
    n = d.shape[-1]
    mean = d.mean(axis=-1)
    if n < 2:
        ones = np.ones_like(mean)
        return _out(ones, single), _out(mean - 1.0, single), _out(mean + 1.0, single)
    sd = d.std(axis=-1, ddof=1)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        p_low = stats.ttest_1samp(d, -margin, axis=-1, alternative="greater").pvalue
        p_high = stats.ttest_1samp(d, margin, axis=-1, alternative="less").pvalue
    p = np.maximum(np.asarray(p_low, dtype=float), np.asarray(p_high, dtype=float))
    half = stats.t.ppf(1 - alpha, n - 1) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    constant = sd == 0
    if constant.any():
        c = mean[constant]
        with np.errstate(divide="ignore"):
            p_low = np.minimum(1.0, ((1 - margin) / np.maximum(1 + c, 0.0)) ** n)
            p_high = np.minimum(1.0, ((1 - margin) / np.maximum(1 - c, 0.0)) ** n)
        p[constant] = np.maximum(p_low, p_high)
        floor = disagreement_floor(n, alpha)
        low[constant] = c - (1 + c) * floor
        high[constant] = c + (1 - c) * floor
    return _out(p, single), _out(low, single), _out(high, single)


def disagreement_floor(n: int, alpha: float = ALPHA) -> float:
    """The disagreement rate ``n`` cases cannot rule out when none disagreed (one-sided bound, ~3/n)."""
    return 1.0 - alpha ** (1.0 / n) if n > 0 else 1.0


def _z_total(alpha: float, power: float) -> float:
    return float(stats.norm.ppf(1 - alpha) + stats.norm.ppf(1 - (1 - power) / 2))


def _smallest_n(factor: float, variance: float, alpha: float) -> int:
    """The smallest n with ``n >= factor * max(variance, floor(n))`` (the floor shrinks as n grows),
    capped at :data:`MAX_CASES` (a difference of nearly zero needs "unboundedly many")."""
    if factor * variance >= MAX_CASES:
        return MAX_CASES
    n = max(2, math.ceil(factor * variance))
    if n >= factor * disagreement_floor(n, alpha):
        return n
    low, high = n, n * 2
    while high < factor * disagreement_floor(high, alpha):
        if high >= MAX_CASES:
            return MAX_CASES
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if middle >= factor * disagreement_floor(middle, alpha):
            high = middle
        else:
            low = middle
    return high


def cases_needed(variance: float, margin: float, alpha: float = ALPHA, power: float = POWER) -> int:
    """The sample-size guard: cases an 80%-power TOST needs at this margin if the true difference
    is 0, given the variance of paired differences (floored by what the cases cannot rule out).
    A zero margin can never be met: equivalence within ±0 needs unboundedly many cases."""
    if margin <= 0:
        return MAX_CASES
    return _smallest_n(_z_total(alpha, power) ** 2 / margin**2, variance, alpha)


def repeats_needed(
    variance: float,
    within: tuple[float, float],
    repeats: tuple[int, int],
    n: int,
    margin: float,
    alpha: float = ALPHA,
    power: float = POWER,
) -> int | None:
    """Repeats per case (both runs) that would make ``n`` cases meet the guard, or None when
    repeats alone cannot (the spread between cases, or the floor, already exceeds what ``n`` allows).

    ``within`` are the mean within-case variances of single-call scores of each run (from repeats):
    the variance of a case's mean falls with repeats, the spread between cases does not.
    """
    target = n * margin**2 / _z_total(alpha, power) ** 2
    noise = within[0] + within[1]
    if noise <= 0:
        return None
    between = max(0.0, variance - within[0] / repeats[0] - within[1] / repeats[1])
    if disagreement_floor(n, alpha) >= target or between >= target:
        return None
    return max(1, math.ceil(noise / (target - between)))


@dataclass
class Behavioral:
    """The behavioral comparison of two runs' per-case scores (difference = B - A)."""

    cases: int
    margin: float
    alpha: float
    mean_a: float
    mean_b: float
    difference: float
    ci95: tuple[float, float]
    permutation_p: float
    tost_p: float
    tost_interval: tuple[float, float]
    variance: float
    cases_needed: int  # the sample-size guard
    repeats_needed: int | None
    verdict: str
    reason: str
    decisive_test: str
    mcnemar: dict[str, Any] | None = None

    @property
    def guard_met(self) -> bool:
        return self.cases >= self.cases_needed

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "cases": self.cases,
            "margin": self.margin,
            "alpha": self.alpha,
            "mean_a": self.mean_a,
            "mean_b": self.mean_b,
            "difference": self.difference,
            "ci95": {"low": self.ci95[0], "high": self.ci95[1], "method": "bootstrap BCa over cases"},
            "paired_test": {
                "decisive": self.decisive_test,
                "permutation_p": self.permutation_p,
                "mcnemar": self.mcnemar,
            },
            "equivalence": {
                "method": "TOST (two one-sided paired t-tests)",
                "p": self.tost_p,
                "interval": {"low": self.tost_interval[0], "high": self.tost_interval[1],
                             "confidence": 1 - 2 * self.alpha},
            },
            "sample_size": {
                "variance": self.variance,
                "cases_needed": self.cases_needed,
                "repeats_needed": self.repeats_needed,
                "guard_met": self.guard_met,
            },
        }


def _within_variance(scores: list[list[float]]) -> float | None:
    if not scores or min(len(s) for s in scores) < 2:
        return None
    return float(np.mean([np.var(s, ddof=1) for s in scores]))


def compare_scores(
    scores_a: list[list[float]],
    scores_b: list[list[float]],
    margin: float,
    alpha: float = ALPHA,
    n_resamples: int = 9999,
    seed: int | None = None,
) -> Behavioral:
    """Compare two runs' scores case by case (``scores_x[i]`` = the scores of case i, by repeat)."""
    if len(scores_a) != len(scores_b) or not scores_a:
        raise ValueError("compare_scores needs the same, non-zero number of cases on both sides")
    a = np.array([np.mean(s) for s in scores_a])
    b = np.array([np.mean(s) for s in scores_b])
    d = b - a
    n = len(d)
    rng = np.random.default_rng(seed)
    low, high = mean_difference_ci(d, 0.95, n_resamples, rng)
    permutation_p = float(paired_permutation_pvalue(b, a, n_resamples, rng)) if n > 1 else 1.0
    binary = bool(np.all(np.isin(a, (0.0, 1.0))) and np.all(np.isin(b, (0.0, 1.0))))
    mcnemar = None
    decisive_p, decisive = permutation_p, "permutation"
    if binary:
        p, only_a, only_b = mcnemar_exact_pvalue(a, b)
        mcnemar = {"p": p, "only_a_passed": only_a, "only_b_passed": only_b}
        decisive_p, decisive = p, "mcnemar"
    tost_p, tost_low, tost_high = tost(d, margin, alpha)
    variance = float(np.var(d, ddof=1)) if n > 1 else 1.0
    difference = float(d.mean())
    guard = cases_needed(variance, margin, alpha)
    equivalent = n > 1 and float(tost_p) < alpha
    different = decisive_p < alpha
    more_repeats = None
    if equivalent and n >= guard:
        verdict = REPRODUCED
        reason = (f"the mean score difference is within ±{margin:g} (TOST p = {float(tost_p):.3g} < {alpha:g}) "
                  f"on {plural(n, 'case')} (≥ {guard} needed)")
    elif different:
        verdict = NOT_REPRODUCED
        reason = f"the mean score differs by {difference:+.3f} ({decisive} test p = {decisive_p:.3g} < {alpha:g})"
    else:
        verdict = INCONCLUSIVE
        if equivalent:
            reason = f"TOST shows equivalence within ±{margin:g}, but {plural(n, 'case')} {'is' if n == 1 else 'are'} fewer than the {guard} needed (sample-size guard)"
        else:
            reason = (f"equivalence within ±{margin:g} not shown (TOST p = {float(tost_p):.3g}) and no significant "
                      f"difference ({decisive} p = {decisive_p:.3g})")
        within_a, within_b = _within_variance(scores_a), _within_variance(scores_b)
        repeats = (min(len(s) for s in scores_a), min(len(s) for s in scores_b))
        if within_a is not None and within_b is not None:
            more_repeats = repeats_needed(variance, (within_a, within_b), repeats, n, margin, alpha)
            if more_repeats is not None and more_repeats <= max(repeats):
                more_repeats = None
        if n < guard:
            reason += "" if equivalent else f"; needs about {guard} cases"
            if more_repeats is not None:
                reason += f", or {more_repeats} repeats per case at {plural(n, 'case')}"
        else:
            reason += "; the difference is too close to the margin to decide: more cases or repeats narrow the interval"
    return Behavioral(
        cases=n,
        margin=margin,
        alpha=alpha,
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        difference=float(d.mean()),
        ci95=(float(low), float(high)),
        permutation_p=permutation_p,
        tost_p=float(tost_p),
        tost_interval=(float(tost_low), float(tost_high)),
        variance=variance,
        cases_needed=guard,
        repeats_needed=more_repeats,
        verdict=verdict,
        reason=reason,
        decisive_test=decisive,
        mcnemar=mcnemar,
    )
