from __future__ import annotations

import math

import pytest
import torch
from captum.attr import Occlusion

from gate.errors import CheckError
from gate.explain import AttributionOptions, occlusion
from gate.explain._utils import resolve_baseline
from gate.explain.occlusion import OcclusionPlan, occlusion_plan

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


def linear_probability_score_fn(weight: torch.Tensor):
    """Two classes whose softmax is ``p_0 = 0.5 + <weight, x - 0.5>``: occlusion's drops are linear in x."""

    def score_fn(batch: torch.Tensor) -> torch.Tensor:
        p0 = 0.5 + ((batch - 0.5) * weight).flatten(1).sum(dim=1)
        return torch.log(torch.stack([p0, 1 - p0], dim=1))

    return score_fn


def expected_linear_occlusion(x, weight, baseline, window, stride):
    """Each patch's drop is ``sum over the patch of weight * (x - baseline)``; a pixel gets the mean drop of
    the patches covering it (patches start at multiples of the stride; the last one is cut at the edge)."""
    _, _, height, width = x.shape
    contribution = (weight * (x - baseline)).sum(dim=1)  # [N, H, W], all channels of a pixel together
    sums, covering = torch.zeros_like(contribution), torch.zeros((height, width))
    rows = range(0, max(height - window, 0) + stride, stride)
    columns = range(0, max(width - window, 0) + stride, stride)
    for top in rows:
        for left in columns:
            patch = (slice(top, top + window), slice(left, left + window))
            sums[:, patch[0], patch[1]] += contribution[:, patch[0], patch[1]].sum(dim=(1, 2))[:, None, None]
            covering[patch] += 1
    return (sums / covering)[:, None].expand_as(x)


@pytest.mark.parametrize(
    ("shape", "window", "stride"), [((2, 8, 8), 4, 4), ((2, 8, 8), 4, 2), ((1, 10, 7), 3, 2)]
)
def test_strided_windows_on_a_model_linear_in_probability(shape, window, stride):
    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(shape, generator=generator) * 0.002
    x = torch.rand((3, *shape), generator=generator)
    options = AttributionOptions(window=window, stride=stride, baseline=0.25, batch_size=7)
    score_fn = linear_probability_score_fn(weight)
    attribution = occlusion(
        x, torch.zeros(3, dtype=torch.long), gradient_model=None, score_fn=score_fn, options=options
    )
    expected = expected_linear_occlusion(x.double(), weight.double(), 0.25, window, stride).float()
    torch.testing.assert_close(attribution, expected, atol=2e-6, rtol=1e-4)
    if window == stride and shape[1] % window == 0:  # disjoint patches: a pixel holds its patch's whole drop
        first_patch = (weight * (x - 0.25))[:, :, :window, :window].sum(dim=(1, 2, 3))
        torch.testing.assert_close(attribution[:, 0, 0, 0], first_patch, atol=2e-6, rtol=1e-4)


@pytest.mark.parametrize(("size", "window", "stride"), [((10, 10), 4, 3), ((9, 13), 5, 5), ((8, 8), 9, 2)])
def test_agrees_with_captum_where_patches_are_cut_at_the_edge(size, window, stride):
    generator = torch.Generator().manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * size[0] * size[1], 3))
    x = torch.rand((4, 2, *size), generator=generator)
    target = torch.tensor([0, 1, 2, 0])
    options = AttributionOptions(window=window, stride=stride, baseline="mean", batch_size=5)
    ours = occlusion(x, target, gradient_model=None, score_fn=model, options=options)
    theirs = Occlusion(lambda batch: torch.softmax(model(batch), dim=1)).attribute(
        x,
        sliding_window_shapes=(2, min(window, size[0]), min(window, size[1])),
        strides=(2, stride, stride),
        baselines=resolve_baseline(x, "mean"),
        target=target,
    )
    torch.testing.assert_close(ours, theirs)


def test_the_default_at_48_by_192_needs_a_tenth_of_the_stride_one_passes():
    default = occlusion_plan((3, 48, 192), AttributionOptions())
    stride_one = occlusion_plan((3, 48, 192), AttributionOptions(window=2, stride=1))
    assert (default.window, default.stride) == (6, 3)
    assert default.patches == 15 * 63 and stride_one.patches == 47 * 191
    assert default.passes_per_sample * 9 < stride_one.passes_per_sample
    # small images keep the old setting: 2-pixel patches moving one pixel at a time
    assert occlusion_plan((1, 8, 8), AttributionOptions()) == OcclusionPlan(window=2, stride=1, patches=49)
    assert occlusion_plan((30,), AttributionOptions(window=5)) == OcclusionPlan(None, None, patches=30)


def test_the_planned_passes_are_the_passes_made_in_batches_of_at_most_batch_size():
    calls: list[int] = []

    def score_fn(batch: torch.Tensor) -> torch.Tensor:
        calls.append(len(batch))
        return torch.stack([batch.mean(dim=(1, 2, 3)), torch.zeros(len(batch))], dim=1)

    x = torch.rand((3, 1, 48, 192))
    options = AttributionOptions(batch_size=400)
    occlusion(x, torch.zeros(3, dtype=torch.long), gradient_model=None, score_fn=score_fn, options=options)
    plan = occlusion_plan((1, 48, 192), options)
    assert sum(calls) == 3 * plan.passes_per_sample
    assert max(calls) <= 400 and len(calls) <= 3 * math.ceil(plan.patches / 400) + 1


def test_a_stride_longer_than_the_window_is_refused():
    x, target = random_batch(n=2)
    with pytest.raises(CheckError, match="stride 3 is longer than its window 2"):
        occlusion(
            x,
            target,
            gradient_model=None,
            score_fn=SmoothNet(),
            options=AttributionOptions(window=2, stride=3),
        )
