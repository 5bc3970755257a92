from __future__ import annotations

import torch
from captum.attr import Occlusion

from gate.explain import AttributionOptions, occlusion
from gate.explain._utils import resolve_baseline

from .helpers import LinearModel, SmoothNet, numpy_score_fn, random_batch


def test_agrees_with_captum_on_target_probability():
    model = SmoothNet()
    x, target = random_batch(n=5)
    options = AttributionOptions(window=3, stride=2, baseline=0.25, batch_size=16)
    ours = occlusion(x, target, gradient_model=None, score_fn=model, options=options)
    theirs = Occlusion(lambda batch: torch.softmax(model(batch), dim=1)).attribute(
        x, sliding_window_shapes=(1, 3, 3), strides=(1, 2, 2), baselines=0.25, target=target
    )
    torch.testing.assert_close(ours, theirs)


def test_runs_on_a_numpy_score_function_without_gradients():
    model = LinearModel()
    x, target = random_batch()
    options = AttributionOptions(batch_size=20)
    from_numpy = occlusion(x, target, gradient_model=None, score_fn=numpy_score_fn(model), options=options)
    from_torch = occlusion(x, target, gradient_model=None, score_fn=model, options=options)
    assert from_numpy.shape == x.shape and from_numpy.dtype == x.dtype
    torch.testing.assert_close(from_numpy, from_torch, atol=1e-5, rtol=1e-4)


def test_single_pixel_windows_on_a_one_pixel_model():
    """Only pixel (2, 5) moves the score: occlusion with 1x1 windows marks exactly that pixel."""

    def score_fn(batch: torch.Tensor) -> torch.Tensor:
        logit = 5 * batch[:, 0, 2, 5]
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)

    x = torch.ones((2, 1, 8, 8))
    options = AttributionOptions(window=1, baseline="zero")
    attribution = occlusion(x, torch.tensor([0, 1]), gradient_model=None, score_fn=score_fn, options=options)
    assert attribution[0, 0, 2, 5] > 0.4 and attribution[1, 0, 2, 5] < -0.4
    attribution[:, 0, 2, 5] = 0
    assert attribution.abs().max() == 0


def test_mean_baseline_agrees_with_captum_given_the_full_tensor():
    model = SmoothNet()
    x, target = random_batch(n=4)
    options = AttributionOptions(baseline="mean", batch_size=12)
    ours = occlusion(x, target, gradient_model=None, score_fn=model, options=options)
    theirs = Occlusion(lambda batch: torch.softmax(model(batch), dim=1)).attribute(
        x, sliding_window_shapes=(1, 2, 2), baselines=resolve_baseline(x, "mean"), target=target
    )
    torch.testing.assert_close(ours, theirs)
