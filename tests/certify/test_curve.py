"""The certified-accuracy curve (gate/certify/curve.py): a pure function and its picture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gate.certify.curve import certified_accuracy_curve, radii_grid, write_curve_png


def test_a_sample_counts_where_it_is_correct_and_certified_at_least_that_far() -> None:
    radius = torch.tensor([0.0, 0.1, 0.5, 0.5, 1.2], dtype=torch.float64)
    correct = torch.tensor([False, True, True, False, True])
    curve = certified_accuracy_curve(radius, correct, [0.0, 0.1, 0.3, 0.5, 1.0, 1.2, 2.0])
    assert curve == [(0.0, 0.6), (0.1, 0.6), (0.3, 0.4), (0.5, 0.4), (1.0, 0.2), (1.2, 0.2), (2.0, 0.0)]


def test_an_abstention_is_never_certified_accuracy() -> None:
    """An abstaining sample has radius 0 and is not correct: at r = 0 the curve is the certified accuracy
    of CERTIFY's predictions, not of the base model."""
    curve = certified_accuracy_curve(torch.zeros(4), torch.tensor([False, True, True, True]), [0.0])
    assert curve == [(0.0, 0.75)]


def test_the_curve_refuses_mismatched_or_empty_input() -> None:
    with pytest.raises(ValueError, match="one length"):
        certified_accuracy_curve(torch.zeros(3), torch.ones(2, dtype=torch.bool), [0.0])
    with pytest.raises(ValueError):
        certified_accuracy_curve(torch.zeros(0), torch.zeros(0, dtype=torch.bool), [0.0])


def test_the_grid_reaches_past_the_largest_radius() -> None:
    grid = radii_grid(torch.tensor([0.2, 0.8]), policy_radius=0.5, points=5)
    assert grid[0] == 0.0 and grid[-1] == pytest.approx(0.84) and len(grid) == 5
    assert radii_grid(torch.zeros(3), policy_radius=1.0, points=3)[-1] == pytest.approx(1.05)


def test_the_picture_is_a_png(tmp_path: Path) -> None:
    curve = certified_accuracy_curve(
        torch.tensor([0.1, 0.4, 0.9]), torch.ones(3, dtype=torch.bool), [0, 0.5, 1]
    )
    path = write_curve_png(tmp_path / "nested" / "curve.png", curve, policy_radius=0.25)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
