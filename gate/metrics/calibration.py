"""Calibration of a classifier's confidence: expected calibration error, overconfidence, Brier score.

Pure numpy (no torch): arrays in, numbers out. Bins are **equal-mass**: the samples sorted by confidence
are cut into ``bins`` contiguous groups of sizes that differ by at most one (the larger groups first,
``numpy.array_split``'s rule), so every bin's accuracy rests on about ``N / bins`` samples, where
equal-width bins leave most samples of a confident model in the last bin (Nixon et al. 2019, "Measuring
Calibration in Deep Learning"). **Ties**: the sort is stable, so samples of equal confidence keep their
order in the data and a run of ties may be split between two neighbouring bins; the bins then depend only
on the data and its order, never on a random draw. With fewer samples than bins there is one bin per sample.

Intervals are seeded percentile bootstraps (Efron & Tibshirani 1993) that resample samples and recompute
the bins on each resample. ECE is biased upwards on a finite sample (the absolute value of noise is
positive), and so is its bootstrap: a gate that judges the upper bound errs on the side of failing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gate.stats import Interval, bootstrap_mean_interval

RESAMPLES = 2000
_CHUNK = 256  # resamples drawn at once: bounds memory at _CHUNK * N values


@dataclass(frozen=True)
class ReliabilityBin:
    """One equal-mass bin of the reliability diagram."""

    count: int
    confidence: float
    """Mean confidence of the bin's samples."""
    accuracy: float
    """Share of the bin's samples that are correct."""
    lowest: float
    highest: float
    """The smallest and largest confidence in the bin."""


def _validated(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct).astype(bool).ravel()
    if confidence.size == 0 or confidence.shape != correct.shape:
        raise ValueError(
            f"confidence and correct must be non-empty and of one length, got {confidence.size} and {correct.size}"
        )
    if not np.all(np.isfinite(confidence)) or confidence.min() < 0 or confidence.max() > 1:
        raise ValueError("confidences must be finite and lie in [0, 1]")
    return confidence, correct


def bin_sizes(n: int, bins: int) -> np.ndarray:
    """Sizes of ``bins`` equal-mass bins of ``n`` sorted samples (``min(bins, n)`` bins when n < bins)."""
    if bins < 1 or n < 1:
        raise ValueError(f"need at least one bin and one sample, got {bins} bins and {n} samples")
    used = min(bins, n)
    sizes = np.full(used, n // used, dtype=np.int64)
    sizes[: n % used] += 1
    return sizes


def equal_mass_bins(confidence: np.ndarray, bins: int) -> list[np.ndarray]:
    """The samples' indices, one array per bin, from the least to the most confident bin.

    A stable sort: tied confidences keep their order in the data (see the module's note on ties).
    """
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    order = np.argsort(confidence, kind="stable")
    return np.split(order, np.cumsum(bin_sizes(confidence.size, bins))[:-1])


def _bin_sums(confidence: np.ndarray, correct: np.ndarray, bins: int) -> tuple[np.ndarray, ...]:
    """Per row of ``[R, N]`` arrays: each bin's sum of confidence and of correct, and the bin sizes."""
    order = np.argsort(confidence, axis=1, kind="stable")
    sorted_confidence = np.take_along_axis(confidence, order, axis=1)
    sorted_correct = np.take_along_axis(correct, order, axis=1).astype(np.float64)
    sizes = bin_sizes(confidence.shape[1], bins)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return (
        np.add.reduceat(sorted_confidence, starts, axis=1),
        np.add.reduceat(sorted_correct, starts, axis=1),
        sizes,
    )


def _ece_rows(confidence: np.ndarray, correct: np.ndarray, bins: int) -> np.ndarray:
    # sum_B |B|/N * |acc(B) - conf(B)| = sum_B |sum_B correct - sum_B confidence| / N
    confidence_sums, correct_sums, _ = _bin_sums(confidence, correct, bins)
    return np.abs(correct_sums - confidence_sums).sum(axis=1) / confidence.shape[1]


def _overconfidence_rows(confidence: np.ndarray, correct: np.ndarray, bins: int) -> np.ndarray:
    confidence_sums, correct_sums, sizes = _bin_sums(confidence, correct, bins)
    return np.maximum(0.0, (confidence_sums[:, -1] - correct_sums[:, -1]) / sizes[-1])


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int) -> float:
    """ECE over equal-mass bins, weighted by bin size: Σ_B |B|/N · |acc(B) − conf(B)| (Guo et al. 2017).

    Args:
        confidence: ``[N]`` the probability the model gives its predicted class, in [0, 1].
        correct: ``[N]`` bool, the prediction is the label.
        bins: the number of equal-mass bins (fewer when there are fewer samples).
    """
    confidence, correct = _validated(confidence, correct)
    return float(_ece_rows(confidence[None], correct[None], bins)[0])


def max_overconfidence(confidence: np.ndarray, correct: np.ndarray, bins: int) -> float:
    """max(0, conf(B) − acc(B)) of the most confident equal-mass bin: how far the model's surest answers
    overstate their accuracy (0 when they are right at least as often as they claim)."""
    confidence, correct = _validated(confidence, correct)
    return float(_overconfidence_rows(confidence[None], correct[None], bins)[0])


def brier_per_sample(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Σ_c (p_c − 1[y = c])² for each sample (the multi-class Brier score of Brier 1950), in [0, 2]."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if probabilities.ndim != 2 or probabilities.shape[0] != labels.size or labels.size == 0:
        raise ValueError(
            f"expected probabilities [N, C] and labels [N] with N > 0, got {probabilities.shape} and {labels.shape}"
        )
    if labels.min() < 0 or labels.max() >= probabilities.shape[1]:
        raise ValueError(f"labels must lie in [0, {probabilities.shape[1] - 1}]")
    one_hot = np.zeros_like(probabilities)
    one_hot[np.arange(labels.size), labels] = 1.0
    return ((probabilities - one_hot) ** 2).sum(axis=1)


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The mean over samples of :func:`brier_per_sample`: 0 for certain right answers, 2 for certain wrong ones."""
    return float(brier_per_sample(probabilities, labels).mean())


def reliability_table(confidence: np.ndarray, correct: np.ndarray, bins: int) -> list[ReliabilityBin]:
    """Each equal-mass bin's size, mean confidence and accuracy, from the least confident bin up."""
    confidence, correct = _validated(confidence, correct)
    return [
        ReliabilityBin(
            count=int(members.size),
            confidence=float(confidence[members].mean()),
            accuracy=float(correct[members].mean()),
            lowest=float(confidence[members].min()),
            highest=float(confidence[members].max()),
        )
        for members in equal_mass_bins(confidence, bins)
    ]


def _bootstrap(rows, confidence, correct, bins, level, resamples, seed) -> Interval:
    confidence, correct = _validated(confidence, correct)
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        stop = min(resamples, start + _CHUNK)
        picks = rng.integers(0, confidence.size, size=(stop - start, confidence.size))
        values[start:stop] = rows(confidence[picks], correct[picks], bins)
    alpha = 1 - level
    lower, upper = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return Interval(float(lower), float(upper), level, "bootstrap-percentile")


def ece_interval(
    confidence: np.ndarray,
    correct: np.ndarray,
    bins: int,
    level: float,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of :func:`expected_calibration_error` at ``level`` (e.g. 0.95)."""
    return _bootstrap(_ece_rows, confidence, correct, bins, level, resamples, seed)


def max_overconfidence_interval(
    confidence: np.ndarray,
    correct: np.ndarray,
    bins: int,
    level: float,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of :func:`max_overconfidence` at ``level``."""
    return _bootstrap(_overconfidence_rows, confidence, correct, bins, level, resamples, seed)


def brier_interval(
    probabilities: np.ndarray, labels: np.ndarray, level: float, *, resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """Percentile bootstrap interval of :func:`brier_score`: a mean of per-sample values."""
    per_sample = brier_per_sample(probabilities, labels)
    return bootstrap_mean_interval(per_sample, level, resamples=resamples, seed=seed)


__all__ = [
    "ReliabilityBin",
    "bin_sizes",
    "brier_interval",
    "brier_per_sample",
    "brier_score",
    "ece_interval",
    "equal_mass_bins",
    "expected_calibration_error",
    "max_overconfidence",
    "max_overconfidence_interval",
    "reliability_table",
]
