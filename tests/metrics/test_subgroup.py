"""Per-group accuracy and the worst group's interval: Bonferroni-corrected, wider than the naive interval,
and covering the true worst-group accuracy at the stated rate where the naive one does not."""

from __future__ import annotations

import numpy as np
import pytest

from gate.metrics.subgroup import corrected_confidence, subgroup_accuracy
from gate.stats import clopper_pearson


def grouped(correct_per_group: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Group ids and correctness flags from (correct, n) per group."""
    ids = np.concatenate([np.full(n, g) for g, (_, n) in enumerate(correct_per_group)])
    hits = np.concatenate([np.arange(n) < k for k, n in correct_per_group])
    return ids, hits


def test_each_group_gets_its_count_accuracy_and_exact_interval():
    ids, hits = grouped([(45, 50), (30, 60), (19, 20)])
    result = subgroup_accuracy(ids, hits, names=["a", "b", "c"], confidence=0.95)
    assert [(g.name, g.n, g.correct) for g in result.groups] == [("a", 50, 45), ("b", 60, 30), ("c", 20, 19)]
    assert result.groups[1].interval == clopper_pearson(30, 60, 0.95)
    assert (result.worst.name, result.worst.accuracy) == ("b", 0.5)
    assert result.best.name == "c" and result.gap == pytest.approx(0.95 - 0.5)


def test_the_worst_interval_is_bonferroni_corrected_and_wider_than_the_naive_one():
    ids, hits = grouped([(45, 50), (30, 60), (40, 50), (48, 50)])
    result = subgroup_accuracy(ids, hits, names=list("abcd"), confidence=0.95)
    naive = clopper_pearson(30, 60, 0.95)
    corrected = clopper_pearson(30, 60, 1 - 0.05 / 4)
    assert result.group_confidence == pytest.approx(0.9875)
    assert (result.worst_interval.lower, result.worst_interval.upper) == pytest.approx(
        (corrected.lower, corrected.upper)
    )
    assert result.worst_interval.lower < naive.lower and result.worst_interval.upper > naive.upper
    assert (
        result.worst_interval.confidence == 0.95
        and "bonferroni over 4 groups" in result.worst_interval.method
    )
    uncorrected = subgroup_accuracy(ids, hits, names=list("abcd"), confidence=0.95, correction="none")
    assert (uncorrected.worst_interval.lower, uncorrected.worst_interval.upper) == pytest.approx(
        (naive.lower, naive.upper)
    )


def test_a_small_group_that_may_be_worst_lowers_the_bound_even_when_it_looks_better():
    """Whatever group is truly worst lies in [min lower, min upper]: a 10-sample group counts."""
    ids, hits = grouped([(300, 400), (8, 10)])
    result = subgroup_accuracy(ids, hits, names=["big", "small"], confidence=0.95)
    assert result.worst.name == "big"
    assert result.worst_interval.lower == pytest.approx(clopper_pearson(8, 10, 0.975).lower)
    assert result.worst_interval.lower < clopper_pearson(300, 400, 0.975).lower


def test_the_gap_interval_is_best_upper_minus_worst_lower():
    ids, hits = grouped([(45, 50), (30, 60)])
    result = subgroup_accuracy(ids, hits, names=["a", "b"], confidence=0.9)
    a, b = clopper_pearson(45, 50, 0.95), clopper_pearson(30, 60, 0.95)
    assert result.gap_interval.upper == pytest.approx(a.upper - b.lower)
    assert result.gap_interval.lower == pytest.approx(a.lower - b.upper)
    assert result.gap_interval.lower <= result.gap <= result.gap_interval.upper


def test_small_groups_are_reported_but_not_judged():
    ids, hits = grouped([(45, 50), (0, 3), (40, 50)])
    result = subgroup_accuracy(ids, hits, names=["a", "tiny", "c"], confidence=0.95, min_group_size=10)
    assert [g.judged for g in result.groups] == [True, False, True]
    assert result.worst.name == "c" and result.group_confidence == pytest.approx(0.975)
    with pytest.raises(ValueError, match="min_group_size = 100 samples; the largest has 50"):
        subgroup_accuracy(ids, hits, names=["a", "tiny", "c"], confidence=0.95, min_group_size=100)


def test_without_a_confidence_there_are_no_intervals():
    ids, hits = grouped([(45, 50), (30, 60)])
    result = subgroup_accuracy(ids, hits, names=["a", "b"], confidence=None)
    assert result.worst_interval is None and result.gap_interval is None and result.groups[0].interval is None
    assert corrected_confidence(0.95, 1, "bonferroni") == 0.95


def coverage(p: list[float], n: list[int], *, confidence: float, reps: int, seed: int) -> tuple[float, float]:
    """How often the corrected interval, and the naive interval of the observed worst group, hold min(p)."""
    rng = np.random.default_rng(seed)
    accuracy, sizes = np.array(p), np.array(n)
    ids = np.repeat(np.arange(len(p)), sizes)
    names = [str(g) for g in range(len(p))]
    corrected = naive = 0
    for _ in range(reps):
        hits = rng.random(ids.size) < accuracy[ids]
        result = subgroup_accuracy(ids, hits, names=names, confidence=confidence)
        corrected += result.worst_interval.lower <= accuracy.min() <= result.worst_interval.upper
        naive += result.worst.interval.lower <= accuracy.min() <= result.worst.interval.upper
    return corrected / reps, naive / reps


@pytest.mark.parametrize(
    ("p", "n", "naive_at_most"),
    [
        ([0.8] * 10, [40] * 10, 0.8),  # ten equal groups: the one that looks worst is worse by chance
        ([0.6, 0.75], [20, 500], 0.89),  # a small weak group often looks fine; the large one is picked
    ],
)
def test_the_corrected_interval_covers_the_true_worst_accuracy_at_the_stated_rate(p, n, naive_at_most):
    corrected, naive = coverage(p, n, confidence=0.9, reps=400, seed=1)
    assert corrected >= 0.9 - 2 * np.sqrt(0.9 * 0.1 / 400), corrected
    assert naive <= naive_at_most, naive  # the naive interval of the observed worst group falls short
