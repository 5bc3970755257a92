"""RISE: target probability under random masks, averaged into an importance map."""

from __future__ import annotations

import math

import torch
from torch import nn

from gate.explain._utils import (
    check_batch,
    chunks,
    compact_baseline,
    cpu_generator,
    require_images,
    target_probability,
)
from gate.explain.options import AttributionOptions, ScoreFn


def random_masks(
    count: int, height: int, width: int, *, grid: int, probability: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """RISE's random-mask recipe, drawn once: binary ``grid x grid`` cells and random shifts.

    Returns the cells ``[count, 1, grid, grid]`` and the shifts ``[count, 2]``; :func:`upsample_masks`
    turns any slice of them into smooth masks, so masks do not depend on how the work is batched.
    """
    generator = cpu_generator(seed)
    cells = (torch.rand((count, 1, grid, grid), generator=generator) < probability).float()
    cell_h, cell_w = math.ceil(height / grid), math.ceil(width / grid)
    shifts = torch.stack(
        [
            torch.randint(0, cell_h, (count,), generator=generator),
            torch.randint(0, cell_w, (count,), generator=generator),
        ],
        dim=1,
    )
    return cells, shifts


def upsample_masks(cells: torch.Tensor, shifts: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinearly upsample cells to ``(grid + 1) * cell`` size and crop ``height x width`` at each shift."""
    grid = cells.shape[-1]
    cell_h, cell_w = math.ceil(height / grid), math.ceil(width / grid)
    large = nn.functional.interpolate(
        cells, size=((grid + 1) * cell_h, (grid + 1) * cell_w), mode="bilinear", align_corners=False
    )
    rows = shifts[:, 0, None] + torch.arange(height, device=cells.device)
    cols = shifts[:, 1, None] + torch.arange(width, device=cells.device)
    index = torch.arange(len(cells), device=cells.device)[:, None, None]
    return large[:, 0][index, rows[:, :, None], cols[:, None, :]]


def rise(
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    gradient_model: nn.Module | None,
    score_fn: ScoreFn,
    options: AttributionOptions,
    seed: int = 0,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Randomized Input Sampling for Explanation of the target-class probability.

    Petsiuk, Das & Saenko (2018), "RISE: Randomized Input Sampling for Explanation of Black-box Models":
    ``S(pixel) = 1 / (N_masks * p) * sum_i p_c(x * M_i + b * (1 - M_i)) * M_i(pixel)``, with
    ``options.masks`` smooth masks made from ``options.mask_grid``-cell binary grids kept with probability
    ``p = options.mask_probability``, and ``b`` the baseline (zero in the paper). Only ``score_fn`` is
    called. Masks come from ``seed`` alone (same on CPU and CUDA, for any ``batch_size``).

    Args:
        x: Inputs ``[N, C, H, W]``.
        target: Class to explain per sample, ``[N]``.
        gradient_model: Unused (part of the common signature).
        score_fn: Batch -> logits, without gradients; may return a NumPy array.
        options: Reads ``masks``, ``mask_grid``, ``mask_probability``, ``baseline`` and ``batch_size``.
        seed: Seeds the masks.

    Returns:
        Non-negative importance ``[N, H, W]`` repeated over the channels, same shape as ``x``.

    Raises:
        CheckError: For feature vectors ``[N, F]``: the masks are smooth grids over pixels, and a random
            subset of features is what occlusion of one feature at a time measures more directly.
    """
    target = check_batch(x, target)
    require_images("rise", x)
    n, channels, height, width = x.shape
    probabilities = target_probability(score_fn, x.device)
    cells, shifts = random_masks(
        options.masks, height, width, grid=options.mask_grid, probability=options.mask_probability, seed=seed
    )
    saliency = torch.zeros((n, height, width), device=x.device, dtype=torch.float32)
    samples_per_call = min(n, options.batch_size)
    for sample_part in chunks(n, samples_per_call):
        batch = x[sample_part].detach()
        baseline = compact_baseline(batch, options.baseline)
        batch_target = target[sample_part]
        masks_per_call = max(1, options.batch_size // len(batch))
        for mask_part in chunks(options.masks, masks_per_call):
            masks = upsample_masks(cells[mask_part], shifts[mask_part], height, width).to(x.device, x.dtype)
            m = masks[None, :, None]  # [1, k, 1, H, W]
            reference = baseline[:, None] if isinstance(baseline, torch.Tensor) else baseline
            masked = (batch[:, None] * m + reference * (1 - m)).flatten(0, 1)
            scores = probabilities(masked).view(len(batch), len(masks), -1)
            target_scores = scores.gather(2, batch_target[:, None, None].expand(-1, len(masks), 1))[..., 0]
            saliency[sample_part] += torch.einsum("nk,khw->nhw", target_scores, masks.float())
    saliency /= options.masks * options.mask_probability
    return saliency[:, None].expand(-1, channels, -1, -1).to(x.dtype).contiguous()
