"""The calibration metrics on hand-computed cases: equal-mass bins and their ties, ECE, the most confident
bin's overconfidence, the Brier score, and seeded bootstrap intervals that cover the truth."""

from __future__ import annotations

import numpy as np
import pytest

from gate.metrics.calibration import (
    bin_sizes,
    brier_interval,
    brier_per_sample,
    brier_score,
    ece_interval,
    equal_mass_bins,
    expected_calibration_error,
    max_overconfidence,
    max_overconfidence_interval,
    reliability_table,
)


def test_equal_mass_bins_differ_in_size_by_at_most_one_larger_first() -> None:
    assert bin_sizes(10, 3).tolist() == [4, 3, 3]
    assert bin_sizes(2, 15).tolist() == [1, 1]  # fewer samples than bins: one bin per sample
    confidence = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8])
    bins = equal_mass_bins(confidence, 3)
    assert [b.tolist() for b in bins] == [[1, 5, 3], [2, 4], [6, 0]]  # sorted by confidence


def test_ties_keep_their_data_order_and_may_straddle_a_bin_edge() -> None:
    bins = equal_mass_bins(np.array([0.6, 0.6, 0.6, 0.6, 0.9, 0.2]), 2)
    assert [b.tolist() for b in bins] == [[5, 0, 1], [2, 3, 4]]


def test_ece_by_hand() -> None:
    # Two bins of two: {0.6, 0.7} with one right (acc 0.5, conf 0.65), {0.8, 1.0} both right (acc 1, conf 0.9).
    confidence = np.array([0.8, 0.6, 1.0, 0.7])
    correct = np.array([True, False, True, True])
    assert expected_calibration_error(confidence, correct, 2) == pytest.approx(0.5 * 0.15 + 0.5 * 0.1)
    assert max_overconfidence(confidence, correct, 2) == 0.0  # the top bin is underconfident
    table = reliability_table(confidence, correct, 2)
    assert [(r.count, r.confidence, r.accuracy) for r in table] == [
        (2, pytest.approx(0.65), 0.5),
        (2, pytest.approx(0.9), 1.0),
    ]
    assert (table[1].lowest, table[1].highest) == (0.8, 1.0)


def test_a_known_overconfident_distribution_gives_its_ece() -> None:
    # Every sample claims 0.9 and 60% are right: each bin's gap is 0.3, so ECE and the top bin's are 0.3.
    rng = np.random.default_rng(1)
    correct = np.zeros(10_000, dtype=bool)
    correct[:6000] = True
    rng.shuffle(correct)
    confidence = np.full(10_000, 0.9)
    assert expected_calibration_error(confidence, correct, 15) == pytest.approx(0.3, abs=0.02)
    assert max_overconfidence(confidence, correct, 15) == pytest.approx(0.3, abs=0.05)
    interval = ece_interval(confidence, correct, 15, 0.95, resamples=400, seed=0)
    assert interval.lower <= 0.3 <= interval.upper + 0.01


def test_perfectly_calibrated_scores_have_ece_near_zero() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.1, 1.0, size=20_000)
    correct = rng.uniform(size=confidence.size) < confidence  # right exactly as often as claimed
    ece = expected_calibration_error(confidence, correct, 15)
    # Sampling error of one bin's accuracy is about sqrt(p(1-p)/1333) ~ 0.012; ECE averages their sizes.
    assert ece < 0.02
    assert max_overconfidence(confidence, correct, 15) < 0.03
    interval = ece_interval(confidence, correct, 15, 0.95, resamples=300, seed=0)
    assert 0.0 <= interval.lower <= interval.upper < 0.03


def test_bootstrap_intervals_are_seeded_and_contain_the_estimate() -> None:
    rng = np.random.default_rng(2)
    confidence = rng.uniform(0.5, 1.0, size=500)
    correct = rng.uniform(size=500) < confidence - 0.1
    first = ece_interval(confidence, correct, 10, 0.9, resamples=200, seed=7)
    assert first == ece_interval(confidence, correct, 10, 0.9, resamples=200, seed=7)
    assert first != ece_interval(confidence, correct, 10, 0.9, resamples=200, seed=8)
    assert first.lower <= expected_calibration_error(confidence, correct, 10) <= first.upper
    over = max_overconfidence_interval(confidence, correct, 10, 0.9, resamples=200, seed=7)
    assert over.lower <= max_overconfidence(confidence, correct, 10) <= over.upper
    assert (first.confidence, first.method) == (0.9, "bootstrap-percentile")


def test_multiclass_brier_by_hand() -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    labels = np.array([0, 1, 0])
    # (0.3² + 0.2² + 0.1²), (0.5² + 0.5²), (1² + 0 + 1²)
    assert brier_per_sample(probabilities, labels) == pytest.approx([0.14, 0.5, 2.0])
    assert brier_score(probabilities, labels) == pytest.approx((0.14 + 0.5 + 2.0) / 3)
    interval = brier_interval(probabilities, labels, 0.95, resamples=200, seed=0)
    assert 0.14 <= interval.lower <= interval.upper <= 2.0


def test_invalid_input_is_refused_with_what_was_expected() -> None:
    with pytest.raises(ValueError, match="of one length"):
        expected_calibration_error(np.array([0.5, 0.6]), np.array([True]), 2)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        expected_calibration_error(np.array([1.5]), np.array([True]), 2)
    with pytest.raises(ValueError, match="labels must lie"):
        brier_score(np.array([[0.5, 0.5]]), np.array([2]))
