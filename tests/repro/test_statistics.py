"""The statistics of behavioral reproduction: known values, the guard, and their error rates.

The simulations draw whole batches of seeded comparisons with NumPy and run them through the same
vectorized functions the reports use, so a few hundred simulations take about a second.
Tolerances are three binomial standard errors around the nominal rate (plus the known small-sample
shortfall of the bootstrap), so a correct implementation fails them about once in a few hundred runs
only if the seeds are changed; with the fixed seeds they are deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tether.repro.stats import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    cases_needed,
    compare_scores,
    disagreement_floor,
    mcnemar_exact_pvalue,
    mean_difference_ci,
    paired_permutation_pvalue,
    repeats_needed,
    tost,
)

SIMULATIONS = 400


def _band(rate: float, nominal: float, sims: int, slack: float = 0.0) -> tuple[float, float]:
    se = math.sqrt(nominal * (1 - nominal) / sims)
    return nominal - 3 * se - slack, nominal + 3 * se + slack


def _runs(rng: np.random.Generator, sims: int, n: int, repeats: int, drop: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-case mean scores of two runs over cases drawn from a population (B's accuracy lower by ``drop``)."""
    p = rng.uniform(0.1, 0.9, size=(sims, n))
    a = rng.binomial(repeats, p) / repeats
    b = rng.binomial(repeats, p - drop) / repeats
    return a, b


def test_false_alarm_rate_of_the_permutation_test_is_nominal() -> None:
    rng = np.random.default_rng(20240601)
    a, b = _runs(rng, SIMULATIONS, 100, 3, 0.0)
    pvalues = paired_permutation_pvalue(b, a, n_resamples=999, rng=1)
    rate = float(np.mean(pvalues < 0.05))
    low, high = _band(rate, 0.05, SIMULATIONS)
    assert low <= rate <= high, rate


def test_false_alarm_rate_of_mcnemar_is_at_most_nominal() -> None:
    rng = np.random.default_rng(7)
    a, b = _runs(rng, SIMULATIONS, 200, 1, 0.0)
    pvalues, _, _ = mcnemar_exact_pvalue(a, b)
    rate = float(np.mean(pvalues < 0.05))
    _, high = _band(rate, 0.05, SIMULATIONS)
    # the exact test is conservative: its real level is a little under 5%, never over
    assert 0.01 <= rate <= high, rate


def test_false_alarm_rate_of_the_verdict_is_at_most_nominal() -> None:
    rng = np.random.default_rng(99)
    sims = 200
    a, b = _runs(rng, sims, 60, 2, 0.0)
    verdicts = [compare_scores([[x] for x in a[i]], [[y] for y in b[i]], 0.02, n_resamples=499, seed=i).verdict
                for i in range(sims)]
    rate = verdicts.count(NOT_REPRODUCED) / sims
    _, high = _band(rate, 0.05, sims)
    assert rate <= high, rate


def test_bootstrap_interval_covers_the_true_difference_at_its_nominal_rate() -> None:
    rng = np.random.default_rng(31337)
    drop = 0.03
    a, b = _runs(rng, SIMULATIONS, 200, 1, drop)
    low, high = mean_difference_ci(b - a, 0.95, n_resamples=999, rng=2)
    coverage = float(np.mean((low <= -drop) & (-drop <= high)))
    lower, upper = _band(coverage, 0.95, SIMULATIONS, slack=0.01)  # BCa falls a little short at n = 200
    assert lower <= coverage <= upper, coverage


def test_tost_interval_covers_the_true_difference_at_its_nominal_rate() -> None:
    rng = np.random.default_rng(4242)
    drop = 0.01
    a, b = _runs(rng, SIMULATIONS, 150, 2, drop)
    _, low, high = tost(b - a, 0.02)
    coverage = float(np.mean((low <= -drop) & (-drop <= high)))
    lower, upper = _band(coverage, 0.90, SIMULATIONS)
    assert lower <= coverage <= upper, coverage


def test_tost_matches_two_one_sided_t_tests() -> None:
    rng = np.random.default_rng(3)
    d = rng.normal(0.004, 0.05, size=120)
    p, low, high = tost(d, 0.02)
    expected = max(
        stats.ttest_1samp(d, -0.02, alternative="greater").pvalue,
        stats.ttest_1samp(d, 0.02, alternative="less").pvalue,
    )
    assert p == pytest.approx(expected)
    half = stats.t.ppf(0.95, 119) * d.std(ddof=1) / math.sqrt(120)
    assert (low, high) == pytest.approx((d.mean() - half, d.mean() + half))
    # no spread: exact bounds on how many cases could differ, not a zero-width interval
    assert tost(np.zeros(30), 0.02)[0] == pytest.approx(0.98**30)
    assert tost(np.zeros(300), 0.02)[0] == pytest.approx(0.98**300)
    assert tost(np.full(30, 0.05), 0.02)[0] == 1.0
    assert tost(np.array([0.0]), 0.02)[0] == 1.0  # one case proves nothing


def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs() -> None:
    a = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 1], dtype=float)
    b = np.array([0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 0, 1], dtype=float)
    p, only_a, only_b = mcnemar_exact_pvalue(a, b)
    assert (only_a, only_b) == (5, 1)
    assert p == pytest.approx(stats.binomtest(1, 6, 0.5).pvalue)
    assert mcnemar_exact_pvalue(a, a)[0] == 1.0


def test_bootstrap_interval_of_constant_differences_is_exact() -> None:
    low, high = mean_difference_ci(np.full(50, 0.1))
    assert (low, high) == pytest.approx((0.1, 0.1))
    low, high = mean_difference_ci(np.array([[0.0, 0.0, 0.0], [0.0, 1.0, -1.0]]), n_resamples=199, rng=0)
    assert low[0] == high[0] == 0.0 and low[1] < 0 < high[1]


def test_cases_needed_follows_the_tost_sample_size_formula() -> None:
    z = stats.norm.ppf(0.95) + stats.norm.ppf(0.9)
    assert cases_needed(0.05, 0.02) == math.ceil(z**2 * 0.05 / 0.02**2)
    assert cases_needed(0.05, 0.04) < cases_needed(0.05, 0.02)
    assert cases_needed(0.1, 0.02) > cases_needed(0.05, 0.02)
    # with no disagreement at all, the floor (what n cases cannot rule out) sets the number
    n = cases_needed(0.0, 0.02)
    factor = z**2 / 0.02**2
    assert n >= factor * disagreement_floor(n) and n - 1 < factor * disagreement_floor(n - 1)
    assert disagreement_floor(100) == pytest.approx(1 - 0.05 ** (1 / 100))  # about 3/n


def test_repeats_needed_only_when_repeats_can_help() -> None:
    # within-case noise dominates: more repeats shrink it
    more = repeats_needed(0.02, (0.2, 0.2), (2, 2), 400, 0.02)
    assert more is not None and more > 2
    # the spread between cases alone already exceeds what 50 cases allow: repeats cannot help
    assert repeats_needed(0.2, (0.01, 0.01), (2, 2), 50, 0.02) is None
    assert repeats_needed(0.02, (0.0, 0.0), (2, 2), 400, 0.02) is None


@pytest.mark.parametrize(
    ("drop", "n", "repeats", "verdict"),
    [(0.0, 400, 8, REPRODUCED), (0.10, 300, 1, NOT_REPRODUCED), (0.02, 10, 1, INCONCLUSIVE)],
)
def test_verdicts_on_simulated_runs(drop: float, n: int, repeats: int, verdict: str) -> None:
    rng = np.random.default_rng(5)
    p = np.where(rng.random(n) < 0.75, 0.97, 0.12)
    a = rng.binomial(1, np.repeat(p[:, None], repeats, axis=1)).astype(float)
    b = rng.binomial(1, np.repeat((p - drop)[:, None], repeats, axis=1)).astype(float)
    result = compare_scores(a.tolist(), b.tolist(), 0.02, n_resamples=999, seed=1)
    assert result.verdict == verdict, result.reason
    if verdict == INCONCLUSIVE:
        assert result.cases_needed > n and f"needs about {result.cases_needed} cases" in result.reason


def test_comparison_refuses_mismatched_cases() -> None:
    with pytest.raises(ValueError, match="same, non-zero number of cases"):
        compare_scores([[1.0]], [[1.0], [0.0]], 0.02)


def test_identical_results_on_few_cases_do_not_prove_non_inferiority() -> None:
    """All paired differences equal (e.g. every case passes in both runs) is no proof of zero
    variance: 3 such cases cannot rule out a regression of 60 points. The lower bound of the
    one-sided 95% interval (what the promotion gate reads) must say so."""
    _, low, high = tost(np.zeros(3), 0.05)
    assert low < -0.5 and high > 0.5
    p, low, _ = tost(np.zeros(300), 0.02)
    assert -0.02 < low < 0 and p < 0.05  # 300 agreeing cases do rule out a 2-point regression


def test_gate_lower_bound_is_calibrated_when_failures_are_rare() -> None:
    """True regression exactly at the margin (99% -> 94% pass rate, margin 0.05): the lower bound
    must clear -margin in at most about 5% of comparisons, however often the runs agree by luck."""
    rng = np.random.default_rng(11)
    for n in (3, 10, 30):
        d = rng.binomial(1, np.full((SIMULATIONS, n), 0.94)) - rng.binomial(1, np.full((SIMULATIONS, n), 0.99))
        _, low, _ = tost(d.astype(float), 0.05)
        rate = float(np.mean(low > -0.05))
        _, high = _band(rate, 0.05, SIMULATIONS)
        assert rate <= high, (n, rate)
