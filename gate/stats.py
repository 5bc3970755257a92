"""Confidence intervals and sample-size arithmetic: pure functions that make a verdict statistically honest."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats


@dataclass(frozen=True)
class Interval:
    """A two-sided interval at ``confidence``; ``method`` names how it was computed, for the report."""

    lower: float
    upper: float
    confidence: float
    method: str


def clopper_pearson(successes: int, n: int, confidence: float) -> Interval:
    """Exact (Clopper–Pearson 1934) interval for a binomial proportion.

    Conservative by construction: its coverage is at least ``confidence`` for every true proportion,
    which is what a gate that must not pass by accident needs.
    """
    if n <= 0:
        raise ValueError("an interval needs at least one sample")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, {n}], got {successes}")
    alpha = 1.0 - confidence
    lower = 0.0 if successes == 0 else float(scipy_stats.beta.ppf(alpha / 2, successes, n - successes + 1))
    upper = (
        1.0 if successes == n else float(scipy_stats.beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    )
    return Interval(lower, upper, confidence, "clopper-pearson")


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval; used inside Newcombe's interval for a difference of proportions."""
    z = float(scipy_stats.norm.ppf(1 - (1 - confidence) / 2))
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def difference_lower_bound(
    successes_a: int, n_a: int, successes_b: int, n_b: int, confidence: float
) -> float:
    """One-sided lower confidence bound of ``p_a - p_b`` (Newcombe 1998, method 10, hybrid score).

    Used for regression against a baseline: a drop blocks only when even its lower bound exceeds the
    allowed drop, so sampling noise between two runs does not fail a release.
    """
    two_sided = 1 - 2 * (1 - confidence)
    p_a, p_b = successes_a / n_a, successes_b / n_b
    lower_a, _ = wilson_interval(successes_a, n_a, two_sided)
    _, upper_b = wilson_interval(successes_b, n_b, two_sided)
    return (p_a - p_b) - math.sqrt((p_a - lower_a) ** 2 + (upper_b - p_b) ** 2)


def normal_difference_lower_bound(
    value_a: float, half_width_a: float, value_b: float, half_width_b: float, confidence: float
) -> float:
    """Lower bound of ``a - b`` for metrics with symmetric intervals, combining their standard errors."""
    z_two_sided = float(scipy_stats.norm.ppf(1 - (1 - confidence) / 2))
    z_one_sided = float(scipy_stats.norm.ppf(confidence))
    se = math.hypot(half_width_a, half_width_b) / z_two_sided
    return (value_a - value_b) - z_one_sided * se


def bootstrap_mean_interval(
    values: np.ndarray, confidence: float, *, resamples: int = 2000, seed: int = 0
) -> Interval:
    """Percentile bootstrap interval of the mean (Efron & Tibshirani 1993), seeded for reproducibility.

    Used for metrics that are not proportions (attribution scores, logit differences).
    """
    data = np.asarray(values, dtype=np.float64).ravel()
    if data.size == 0:
        raise ValueError("an interval needs at least one sample")
    if not np.all(np.isfinite(data)):
        raise ValueError("values contain NaN or infinity")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 256):
        stop = min(resamples, start + 256)
        picks = rng.integers(0, data.size, size=(stop - start, data.size))
        means[start:stop] = data[picks].mean(axis=1)
    alpha = 1 - confidence
    lower, upper = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(lower), float(upper), confidence, "bootstrap-percentile")


def samples_to_decide_proportion(
    estimate: float, threshold: float, confidence: float, *, limit: int = 10_000_000
) -> int | None:
    """Smallest n at which an unchanged estimate would put the exact interval wholly on one side of threshold.

    Returns None when the estimate sits on the threshold (no finite n decides) or no n up to ``limit`` does.
    """
    if estimate == threshold:
        return None
    alpha = 1.0 - confidence

    def decided(n: int) -> bool:
        # The exact bounds with the count estimate * n left unrounded: rounding it made "decided"
        # flip back and forth with n, and the bisection then missed the smallest n by ~10%.
        successes = estimate * n
        if estimate > threshold:
            return (
                successes > 0
                and float(scipy_stats.beta.ppf(alpha / 2, successes, n - successes + 1)) > threshold
            )
        return (
            successes < n
            and float(scipy_stats.beta.ppf(1 - alpha / 2, successes + 1, n - successes)) < threshold
        )

    high = 1
    while not decided(high):
        if high >= limit:
            return None
        high = min(2 * high, limit)  # capped: an answer between the last doubling and the limit counts
    low = high // 2 + 1
    while low < high:
        middle = (low + high) // 2
        if decided(middle):
            high = middle
        else:
            low = middle + 1
    return high


def samples_to_decide_mean(value: float, half_width: float, n: int, threshold: float) -> int | None:
    """Sample count at which a symmetric interval shrinking as 1/sqrt(n) would exclude the threshold."""
    gap = abs(value - threshold)
    if gap == 0 or n <= 0:
        return None
    return math.ceil(n * (half_width / gap) ** 2) + 1


@dataclass(frozen=True)
class PairedSignTest:
    """Two procedures run on the same samples, each over several runs: who succeeds more often, per sample.

    ``theirs_ahead`` counts the samples the other procedure succeeded on more often, ``ours_ahead`` the
    reverse; ``p_value`` is the one-sided exact sign test of "ours succeeds less often" (small means
    ours is weaker). Samples on which both succeed equally often carry no evidence and are left out.
    """

    samples: int
    ours_mean: float
    theirs_mean: float
    ours_ahead: int
    theirs_ahead: int
    p_value: float


def paired_sign_test(ours: np.ndarray, theirs: np.ndarray) -> PairedSignTest:
    """Sign test on per-sample success rates (Dixon & Mood 1946): ``ours`` and ``theirs`` are boolean
    ``[runs, samples]`` arrays (e.g. "the attack broke this point in this seed's run").

    Pairing on samples removes what a comparison of means keeps: the spread between easy and hard points.
    What is left is each point's own run-to-run noise, which the sign test makes no assumption about.
    """
    ours, theirs = np.asarray(ours, dtype=bool), np.asarray(theirs, dtype=bool)
    if ours.ndim != 2 or theirs.ndim != 2 or ours.shape[1] != theirs.shape[1] or ours.shape[1] == 0:
        raise ValueError(
            f"expected two [runs, samples] arrays over the same samples, got {ours.shape} and {theirs.shape}"
        )
    difference = theirs.mean(axis=0) - ours.mean(axis=0)
    theirs_ahead, ours_ahead = int((difference > 0).sum()), int((difference < 0).sum())
    p_value = float(scipy_stats.binom.sf(theirs_ahead - 1, theirs_ahead + ours_ahead, 0.5))
    return PairedSignTest(
        samples=ours.shape[1],
        ours_mean=float(ours.sum(axis=1).mean()),
        theirs_mean=float(theirs.sum(axis=1).mean()),
        ours_ahead=ours_ahead,
        theirs_ahead=theirs_ahead,
        p_value=min(1.0, p_value),
    )
