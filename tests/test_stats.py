"""Interval maths against scipy, known published values and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from gate.stats import (
    bootstrap_mean_interval,
    clopper_pearson,
    difference_lower_bound,
    normal_difference_lower_bound,
    samples_to_decide_mean,
    samples_to_decide_proportion,
    wilson_interval,
)


@pytest.mark.parametrize("n", [1, 2, 7, 50, 1000])
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_clopper_pearson_matches_scipy_exact(n: int, confidence: float) -> None:
    for successes in sorted({0, 1, n // 3, n // 2, n - 1, n} - {-1}):
        if not 0 <= successes <= n:
            continue
        expected = scipy_stats.binomtest(successes, n).proportion_ci(
            confidence_level=confidence, method="exact"
        )
        interval = clopper_pearson(successes, n, confidence)
        assert interval.lower == pytest.approx(expected.low, abs=1e-12)
        assert interval.upper == pytest.approx(expected.high, abs=1e-12)
        assert (interval.confidence, interval.method) == (confidence, "clopper-pearson")


@given(n=st.integers(1, 5000), fraction=st.floats(0, 1), confidence=st.floats(0.5, 0.999))
@settings(max_examples=60, deadline=None)
def test_clopper_pearson_matches_scipy_anywhere(n: int, fraction: float, confidence: float) -> None:
    successes = round(fraction * n)
    expected = scipy_stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="exact")
    interval = clopper_pearson(successes, n, confidence)
    assert (interval.lower, interval.upper) == pytest.approx((expected.low, expected.high), abs=1e-10)
    assert 0 <= interval.lower <= successes / n <= interval.upper <= 1


@pytest.mark.parametrize("p", [0.01, 0.3, 0.5, 0.93])
def test_clopper_pearson_coverage_is_at_least_nominal_exactly(p: float) -> None:
    # Exact coverage: sum the binomial probabilities of the outcomes whose interval contains p.
    n, confidence = 60, 0.9
    covered = [
        clopper_pearson(k, n, confidence).lower <= p <= clopper_pearson(k, n, confidence).upper
        for k in range(n + 1)
    ]
    coverage = float(np.sum(scipy_stats.binom.pmf(np.arange(n + 1), n, p)[covered]))
    assert coverage >= confidence


def test_clopper_pearson_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        clopper_pearson(0, 0, 0.95)
    with pytest.raises(ValueError, match=r"successes must lie in \[0, 5\]"):
        clopper_pearson(6, 5, 0.95)
    with pytest.raises(ValueError, match="successes must lie"):
        clopper_pearson(-1, 5, 0.95)


@pytest.mark.parametrize(("successes", "n"), [(0, 10), (3, 10), (81, 263), (1000, 1000)])
def test_wilson_matches_scipy(successes: int, n: int) -> None:
    expected = scipy_stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(successes, n, 0.95) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_newcombe_matches_the_published_example() -> None:
    # Newcombe (1998), Stat Med 17:873-890, Table II: 56/70 - 48/80, method 10 (score, no CC):
    # 95% interval 0.0524 to 0.3339. Its lower limit is a one-sided 97.5% bound.
    assert difference_lower_bound(56, 70, 48, 80, 0.975) == pytest.approx(0.0524, abs=5e-5)
    # and the upper limit, by symmetry: -(lower bound of b - a)
    assert -difference_lower_bound(48, 80, 56, 70, 0.975) == pytest.approx(0.3339, abs=5e-5)


def test_newcombe_one_sided_coverage_by_simulation() -> None:
    rng = np.random.default_rng(1)
    p_a, p_b, n_a, n_b, confidence = 0.9, 0.86, 400, 300, 0.95
    trials = 2000
    hits_a = rng.binomial(n_a, p_a, size=trials)
    hits_b = rng.binomial(n_b, p_b, size=trials)
    covered = np.mean(
        [
            difference_lower_bound(int(a), n_a, int(b), n_b, confidence) <= p_a - p_b
            for a, b in zip(hits_a, hits_b, strict=True)
        ]
    )
    # nominal 95%; the standard error of the estimate over 2000 trials is about 0.005
    assert 0.935 <= covered <= 0.98


def test_newcombe_bound_is_below_the_observed_difference_and_tightens_with_n() -> None:
    small = difference_lower_bound(90, 100, 85, 100, 0.95)
    large = difference_lower_bound(9000, 10000, 8500, 10000, 0.95)
    assert small < large < 0.05
    assert large == pytest.approx(0.05 - 1.645 * math.sqrt(0.09 / 1e4 + 0.1275 / 1e4), abs=1e-3)


def test_normal_difference_lower_bound_combines_standard_errors() -> None:
    z2, z1 = scipy_stats.norm.ppf(0.975), scipy_stats.norm.ppf(0.95)
    se_a, se_b = 0.01, 0.02
    bound = normal_difference_lower_bound(0.8, z2 * se_a, 0.7, z2 * se_b, 0.95)
    assert bound == pytest.approx(0.1 - z1 * math.hypot(se_a, se_b))


def test_bootstrap_interval_covers_the_mean_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    true_mean, trials, confidence = 1.0, 300, 0.9
    covered = 0
    for trial in range(trials):
        sample = rng.exponential(true_mean, size=80)
        interval = bootstrap_mean_interval(sample, confidence, resamples=400, seed=trial)
        covered += interval.lower <= true_mean <= interval.upper
    # percentile bootstrap on a skewed mean undercovers a little; 300 trials give a standard error ~0.017
    assert 0.82 <= covered / trials <= 0.96


def test_bootstrap_is_seeded_and_brackets_the_sample_mean() -> None:
    values = np.linspace(0, 1, 51)
    first = bootstrap_mean_interval(values, 0.95, seed=3)
    assert first == bootstrap_mean_interval(values, 0.95, seed=3)
    assert first != bootstrap_mean_interval(values, 0.95, seed=4)
    assert first.lower < values.mean() < first.upper
    assert first.method == "bootstrap-percentile"
    # roughly the normal-theory width for a mean of n=51 uniform-ish values
    assert first.upper - first.lower == pytest.approx(2 * 1.96 * values.std() / math.sqrt(51), rel=0.15)


def test_bootstrap_refuses_empty_and_non_finite_input() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        bootstrap_mean_interval(np.array([]), 0.95)
    with pytest.raises(ValueError, match="NaN or infinity"):
        bootstrap_mean_interval(np.array([1.0, float("nan")]), 0.95)


def _decides(estimate: float, threshold: float, confidence: float, n: int) -> bool:
    """Whether n samples with the estimate's count (rounded) give an exact interval clear of the threshold."""
    interval = clopper_pearson(round(estimate * n), n, confidence)
    return interval.lower > threshold or interval.upper < threshold


@pytest.mark.parametrize(
    ("estimate", "threshold"),
    [(0.93, 0.9), (0.87, 0.9), (0.5, 0.45), (0.99, 0.95), (0.02, 0.05), (0.0, 0.05), (1.0, 0.95)],
)
def test_samples_to_decide_proportion_decides_and_is_near_minimal(estimate: float, threshold: float) -> None:
    confidence = 0.95
    n = samples_to_decide_proportion(estimate, threshold, confidence)

    assert n is not None
    # around n the interval clears the threshold for some counts (rounding the count makes single n flip),
    # a little beyond n for every count, and well below n for none
    assert any(_decides(estimate, threshold, confidence, m) for m in range(n - 5, n + 5))
    assert all(_decides(estimate, threshold, confidence, m) for m in range(int(1.3 * n), int(1.3 * n) + 30))
    assert not any(_decides(estimate, threshold, confidence, m) for m in range(1, int(n * 0.85)))
    # one sample fewer does not decide once the count is not rounded: n is the smallest such n
    assert samples_to_decide_proportion(estimate, threshold, confidence, limit=n - 1) is None
    # and a limit anywhere at or above n still finds it (not only powers of two)
    assert samples_to_decide_proportion(estimate, threshold, confidence, limit=n) == n
    assert samples_to_decide_proportion(estimate, threshold, confidence, limit=n + 1) == n
    # the normal approximation z^2 p (1-p) / gap^2 gives the same order of magnitude
    if 0 < estimate < 1:
        z = scipy_stats.norm.ppf(0.975)
        approx = z**2 * estimate * (1 - estimate) / (estimate - threshold) ** 2
        assert 0.5 * approx <= n <= 2.5 * approx + 60


def test_samples_to_decide_proportion_grows_as_the_gap_closes() -> None:
    gaps = [0.05, 0.02, 0.01, 0.005]
    counts = [samples_to_decide_proportion(0.9 + gap, 0.9, 0.95) for gap in gaps]
    assert counts == sorted(counts)
    # roughly quadratic: halving the gap about quadruples n
    assert 3 < counts[3] / counts[2] < 5


def test_samples_to_decide_proportion_without_an_answer() -> None:
    assert samples_to_decide_proportion(0.9, 0.9, 0.95) is None  # on the threshold: no n decides
    assert samples_to_decide_proportion(0.9, 0.8999999, 0.95, limit=1000) is None  # past the limit


def test_samples_to_decide_mean_shrinks_the_half_width_as_one_over_root_n() -> None:
    n = samples_to_decide_mean(value=1.0, half_width=0.5, n=100, threshold=0.75)
    assert n == 100 * 4 + 1
    assert 0.5 * math.sqrt(100 / n) < 0.25  # at n the half width no longer reaches the threshold
    assert samples_to_decide_mean(0.5, 0.2, 100, 0.5) is None
    assert samples_to_decide_mean(0.5, 0.2, 0, 0.4) is None
