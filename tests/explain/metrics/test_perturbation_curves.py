from __future__ import annotations

import pytest
import torch

from gate.errors import CheckError
from gate.explain import deletion_auc, gaussian_blur, insertion_auc, probability_curve

from ..helpers import LinearModel, random_batch


def _two_pixel_score(batch: torch.Tensor) -> torch.Tensor:
    """Class 0's logit is 4 * (pixel (0, 0) + pixel (0, 1)) on a 2x2 image; class 1's is 0."""
    logit = 4 * (batch[:, 0, 0, 0] + batch[:, 0, 0, 1])
    return torch.stack([logit, torch.zeros_like(logit)], dim=1)


def test_curve_by_hand_on_a_two_pixel_model():
    x = torch.ones((1, 1, 2, 2))
    attribution = torch.tensor([[[[2.0, 1.0], [0.0, -1.0]]]])
    target = torch.tensor([0])
    fractions, curve = probability_curve(
        _two_pixel_score, x, torch.zeros_like(x), target, attribution, steps=4, batch_size=3
    )
    torch.testing.assert_close(fractions, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    expected = torch.sigmoid(torch.tensor([8.0, 4.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(curve[0], expected)
    auc = deletion_auc(_two_pixel_score, x, target, attribution, steps=4)
    torch.testing.assert_close(auc, torch.trapezoid(expected, dx=0.25)[None])


def test_true_attribution_beats_its_reverse_on_a_linear_model():
    model = LinearModel()
    x, target = random_batch(n=8)
    truth = model.weight_of(target, x.shape) * x
    good_deletion = deletion_auc(model, x, target, truth)
    bad_deletion = deletion_auc(model, x, target, -truth)
    good_insertion = insertion_auc(model, x, target, truth, baseline=gaussian_blur(x, 1.0))
    bad_insertion = insertion_auc(model, x, target, -truth, baseline=gaussian_blur(x, 1.0))
    assert (good_deletion < bad_deletion).all()
    assert (good_insertion > bad_insertion).all()
    assert ((good_deletion >= 0) & (good_insertion <= 1)).all()


def test_batching_does_not_change_the_areas():
    model = LinearModel()
    x, target = random_batch(n=5)
    attribution = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    one = insertion_auc(model, x, target, attribution, steps=16, batch_size=1)
    many = insertion_auc(model, x, target, attribution, steps=16, batch_size=500)
    torch.testing.assert_close(one, many)


def test_mismatched_attribution_is_reported():
    model = LinearModel()
    x, target = random_batch(n=2)
    with pytest.raises(CheckError, match="attribution must have the input's shape"):
        deletion_auc(model, x, target, x[:, :, :4])
