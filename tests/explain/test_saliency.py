from __future__ import annotations

import pytest
import torch
from captum.attr import Saliency

from gate.errors import CheckError
from gate.explain import AttributionOptions, saliency

from .helpers import LinearModel, SmoothNet, random_batch


def test_linear_model_saliency_is_absolute_weight_of_target():
    model = LinearModel()
    x, target = random_batch()
    attribution = saliency(x, target, gradient_model=model, score_fn=model, options=AttributionOptions())
    torch.testing.assert_close(attribution, model.weight_of(target, x.shape).abs())


def test_agrees_with_captum_in_small_batches():
    model = SmoothNet()
    x, target = random_batch(n=10)
    ours = saliency(x, target, gradient_model=model, score_fn=model, options=AttributionOptions(batch_size=3))
    theirs = Saliency(model).attribute(x.clone().requires_grad_(True), target=target, abs=True)
    torch.testing.assert_close(ours, theirs)


def test_leaves_the_callers_tensor_alone():
    model = SmoothNet()
    x, target = random_batch()
    saliency(x, target, gradient_model=model, score_fn=model, options=AttributionOptions())
    assert not x.requires_grad
    assert all(parameter.grad is None for parameter in model.parameters())


def test_without_gradient_model_says_which_method_needs_gradients():
    x, target = random_batch()
    with pytest.raises(
        CheckError, match="method saliency needs gradients; the model has no differentiable twin"
    ):
        saliency(x, target, gradient_model=None, score_fn=LinearModel(), options=AttributionOptions())
