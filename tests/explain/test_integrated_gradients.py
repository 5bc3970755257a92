from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients

from gate.explain import AttributionOptions, integrated_gradients
from gate.explain._utils import resolve_baseline

from .helpers import LinearModel, SmoothNet, random_batch


def test_linear_model_with_zero_baseline_is_exactly_weight_times_input():
    model = LinearModel()
    x, target = random_batch()
    options = AttributionOptions(steps=4, baseline="zero")
    attribution = integrated_gradients(x, target, gradient_model=model, score_fn=model, options=options)
    torch.testing.assert_close(attribution, model.weight_of(target, x.shape) * x)


@pytest.mark.parametrize("baseline", ["zero", "mean", 0.5])
def test_completeness_on_a_nonlinear_net(baseline):
    """Sundararajan et al.'s completeness axiom: attributions add up to f(x) - f(baseline)."""
    model = SmoothNet()
    x, target = random_batch(n=8)
    options = AttributionOptions(steps=64, baseline=baseline)
    attribution = integrated_gradients(x, target, gradient_model=model, score_fn=model, options=options)
    with torch.no_grad():
        gain = model(x) - model(resolve_baseline(x, baseline))
    expected = gain.gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(attribution.sum(dim=(1, 2, 3)), expected, atol=1e-3, rtol=1e-3)


def test_agrees_with_captum_and_does_not_depend_on_batch_size():
    model = SmoothNet()
    x, target = random_batch(n=10)
    small = integrated_gradients(
        x, target, gradient_model=model, score_fn=model, options=AttributionOptions(steps=16, batch_size=7)
    )
    large = integrated_gradients(
        x, target, gradient_model=model, score_fn=model, options=AttributionOptions(steps=16, batch_size=1024)
    )
    theirs = IntegratedGradients(model).attribute(
        x.clone().requires_grad_(True), baselines=torch.zeros_like(x), target=target, n_steps=16
    )
    torch.testing.assert_close(small, theirs)
    torch.testing.assert_close(large, theirs)
