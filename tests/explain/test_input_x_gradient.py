from __future__ import annotations

import torch
from captum.attr import InputXGradient

from gate.explain import AttributionOptions, input_x_gradient

from .helpers import LinearModel, SmoothNet, random_batch


def test_linear_model_attribution_is_weight_times_input():
    model = LinearModel()
    x, target = random_batch()
    attribution = input_x_gradient(
        x, target, gradient_model=model, score_fn=model, options=AttributionOptions()
    )
    torch.testing.assert_close(attribution, model.weight_of(target, x.shape) * x)


def test_agrees_with_captum():
    model = SmoothNet()
    x, target = random_batch(n=10)
    ours = input_x_gradient(
        x, target, gradient_model=model, score_fn=model, options=AttributionOptions(batch_size=4)
    )
    theirs = InputXGradient(model).attribute(x.clone().requires_grad_(True), target=target)
    torch.testing.assert_close(ours, theirs)
