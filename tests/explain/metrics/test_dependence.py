from __future__ import annotations

import torch

from gate.explain import (
    FLAT_TOLERANCE,
    curve_area,
    curve_spread,
    deletion_auc,
    deletion_curve,
    ignores_input,
    insertion_auc,
    insertion_curve,
    probability_change,
)

from ..helpers import LinearModel, random_batch

FIXED_LOGITS = torch.tensor([0.3, -1.0, 2.0])


def constant_score(batch: torch.Tensor) -> torch.Tensor:
    """Fixed logits, whatever the input."""
    return FIXED_LOGITS.expand(len(batch), -1)


def nearly_constant_score(batch: torch.Tensor) -> torch.Tensor:
    """Fixed logits plus a trace of a real model: the input moves the probabilities by about 1e-5."""
    return constant_score(batch) + 1e-4 * LinearModel()(batch)


def test_a_constant_model_has_flat_curves_and_no_change_at_all():
    x, target = random_batch(n=5)
    attribution = torch.rand(x.shape)
    _, curve = deletion_curve(constant_score, x, target, attribution, steps=8)
    assert torch.equal(curve_spread(curve), torch.zeros(5))
    change = probability_change(constant_score, x, target, torch.zeros_like(x), batch_size=2)
    assert torch.equal(change, torch.zeros(5))
    assert ignores_input(curve_spread(curve)) and ignores_input(change)


def test_a_trace_of_dependence_stays_under_the_tolerance_and_a_real_model_is_far_above():
    x, target = random_batch(n=6)
    attribution = torch.rand(x.shape)
    _, faint = insertion_curve(nearly_constant_score, x, target, attribution, steps=8)
    assert 0 < float(curve_spread(faint).max()) < FLAT_TOLERANCE and ignores_input(curve_spread(faint))
    _, real = deletion_curve(LinearModel(), x, target, attribution, steps=8)
    assert float(curve_spread(real).max()) > 100 * FLAT_TOLERANCE and not ignores_input(curve_spread(real))
    change = probability_change(LinearModel(), x, target, torch.zeros_like(x))
    assert not ignores_input(change)


def test_probability_change_is_the_gap_between_the_ends_of_the_deletion_curve():
    x, target = random_batch(n=4)
    model = LinearModel()
    _, curve = deletion_curve(model, x, target, torch.rand(x.shape), steps=4)
    change = probability_change(model, x, target, torch.zeros_like(x), batch_size=3)
    torch.testing.assert_close(change, (curve[:, 0] - curve[:, -1]).abs())


def test_the_areas_are_those_of_the_curves():
    x, target = random_batch(n=3)
    model, attribution = LinearModel(), torch.rand(x.shape)
    torch.testing.assert_close(
        curve_area(*deletion_curve(model, x, target, attribution)),
        deletion_auc(model, x, target, attribution),
    )
    torch.testing.assert_close(
        curve_area(*insertion_curve(model, x, target, attribution)),
        insertion_auc(model, x, target, attribution),
    )


def test_no_samples_is_not_input_independence():
    assert not ignores_input(torch.zeros(0))
