from __future__ import annotations

import torch

from gate.explain import AttributionOptions, rise
from gate.explain.rise import random_masks, upsample_masks

from .helpers import LinearModel, numpy_score_fn, random_batch


def _corner_score(batch: torch.Tensor) -> torch.Tensor:
    """Class 0 depends only on the top-left 3x3 corner."""
    logit = 4 * batch[:, 0, :3, :3].mean(dim=(1, 2))
    return torch.stack([logit, -logit], dim=1)


def test_masks_are_smooth_in_unit_range_and_keep_about_p():
    cells, shifts = random_masks(400, 8, 8, grid=4, probability=0.3, seed=0)
    masks = upsample_masks(cells, shifts, 8, 8)
    assert masks.shape == (400, 8, 8)
    assert masks.min() >= 0 and masks.max() <= 1
    assert abs(masks.mean().item() - 0.3) < 0.03


def test_finds_the_only_region_that_matters():
    x = torch.ones((3, 1, 8, 8))
    options = AttributionOptions(masks=500, mask_grid=4, batch_size=64)
    attribution = rise(
        x, torch.zeros(3, dtype=torch.long), gradient_model=None, score_fn=_corner_score, options=options
    )
    corner = attribution[:, 0, :3, :3].mean(dim=(1, 2))
    far = attribution[:, 0, 5:, 5:].mean(dim=(1, 2))
    assert (corner > far + 0.1).all()


def test_seeded_independent_of_batch_size_and_runs_on_numpy():
    model = LinearModel()
    x, target = random_batch(n=4)
    score_fn = numpy_score_fn(model)
    small = rise(
        x, target, gradient_model=None, score_fn=score_fn, options=AttributionOptions(masks=60, batch_size=7)
    )
    large = rise(
        x,
        target,
        gradient_model=None,
        score_fn=score_fn,
        options=AttributionOptions(masks=60, batch_size=999),
    )
    other = rise(
        x, target, gradient_model=None, score_fn=score_fn, options=AttributionOptions(masks=60), seed=1
    )
    torch.testing.assert_close(small, large)
    assert not torch.allclose(large, other)
    assert small.shape == x.shape


def test_mean_baseline_fills_masked_pixels_with_each_images_mean():
    """On constant images the "mean" baseline is the image itself, so every masked copy equals its original."""
    x = torch.stack([torch.full((1, 8, 8), 0.2), torch.full((1, 8, 8), 0.7)])
    seen = []

    def recording_score(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch.clone())
        return torch.zeros((len(batch), 2))

    options = AttributionOptions(masks=10, mask_grid=2, baseline="mean", batch_size=8)
    rise(x, torch.zeros(2, dtype=torch.long), gradient_model=None, score_fn=recording_score, options=options)
    masked = torch.cat(seen)
    assert len(masked) == 20
    levels = masked.flatten(1)
    torch.testing.assert_close(levels, levels[:, :1].expand_as(levels))  # every masked copy stays constant
    assert sorted({round(value, 4) for value in levels[:, 0].tolist()}) == [0.2, 0.7]
