"""Occlusion: the drop in target probability when a sliding patch (or one feature) is replaced by a baseline."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from gate.errors import CheckError
from gate.explain._utils import check_batch, chunks, compact_baseline, target_probability
from gate.explain.options import AttributionOptions, ScoreFn

PATCHES_PER_SIDE = 8
"""The default window is the shorter image side over this (at least 2 pixels); the stride is half of it."""


@dataclass(frozen=True)
class OcclusionPlan:
    """Where occlusion puts its patches on one sample, and what that costs.

    Attributes:
        window: Side of the square patch in pixels (``None`` on feature vectors: one feature at a time).
        stride: Step between patch positions in pixels (``None`` on feature vectors).
        patches: Occluded copies of each sample, one per patch position (or per feature).
    """

    window: int | None
    stride: int | None
    patches: int

    @property
    def passes_per_sample(self) -> int:
        """Model evaluations per sample: every occluded copy, plus the sample itself."""
        return self.patches + 1


def default_window(height: int, width: int) -> int:
    """The patch side used when the policy gives none: ``max(2, min(height, width) // 8)``."""
    return max(2, min(height, width) // PATCHES_PER_SIDE)


def _positions(size: int, window: int, stride: int) -> int:
    # Captum's count: starts 0, stride, 2 * stride, ... until a patch reaches the edge; the last patch is
    # cut at the edge when the steps do not land on it.
    return math.ceil((size - window) / stride) + 1


def occlusion_plan(sample_shape: tuple[int, ...], options: AttributionOptions) -> OcclusionPlan:
    """The patch geometry and cost of :func:`occlusion` on samples of ``sample_shape`` (``(C, H, W)`` or ``(F,)``).

    On images the window defaults to :func:`default_window` and the stride to half the window (at least 1),
    as with Captum's sliding windows; a window longer than a side covers that side. A stride longer than
    the window would leave pixels no patch covers, so it is refused.
    """
    if len(sample_shape) == 1:
        return OcclusionPlan(window=None, stride=None, patches=sample_shape[0])
    height, width = sample_shape[-2:]
    window = options.window if options.window is not None else default_window(height, width)
    stride = options.stride if options.stride is not None else max(1, window // 2)
    if stride > window:
        raise CheckError(
            f"occlusion stride {stride} is longer than its window {window}: pixels between patches would "
            "get no attribution; give a stride of at most the window"
        )
    rows = _positions(height, min(window, height), stride)
    columns = _positions(width, min(window, width), stride)
    return OcclusionPlan(window=window, stride=stride, patches=rows * columns)


def _axis_windows(size: int, window: int, stride: int, device: torch.device) -> torch.Tensor:
    """``[positions, size]`` booleans: the pixels of one axis that each patch position covers."""
    window = min(window, size)
    starts = torch.arange(_positions(size, window, stride), device=device) * stride
    pixels = torch.arange(size, device=device)
    return (pixels >= starts[:, None]) & (pixels < starts[:, None] + window)


def _patch_masks(sample_shape: tuple[int, ...], plan: OcclusionPlan, device: torch.device) -> torch.Tensor:
    """``[patches, *unit_layout]`` booleans, True where a patch replaces the input: ``[P, 1, H, W]`` for
    images (the channels broadcast), ``[F, F]`` one-hot rows for features."""
    if plan.window is None or plan.stride is None:
        return torch.eye(sample_shape[0], dtype=torch.bool, device=device)
    height, width = sample_shape[-2:]
    rows = _axis_windows(height, plan.window, plan.stride, device)
    columns = _axis_windows(width, plan.window, plan.stride, device)
    return (rows[:, None, :, None] & columns[None, :, None, :]).view(-1, 1, height, width)


def occlusion(
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    gradient_model: nn.Module | None,
    score_fn: ScoreFn,
    options: AttributionOptions,
    seed: int = 0,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Occlusion sensitivity of the target-class probability.

    Zeiler & Fergus (2014), "Visualizing and Understanding Convolutional Networks", Sec. 4.2: a
    ``window x window`` patch (all channels) slides with ``stride``; each pixel gets the mean of
    ``p_c(x) - p_c(x with the patch set to the baseline)`` over the patches covering it. The probability is
    the softmax of ``score_fn``'s logits, as in the paper. Only ``score_fn`` is called, so a model available
    only as ONNX can be explained. The patch positions are Captum's ``Occlusion`` (starts at multiples of
    the stride, the last patch cut at the edge), and so are the values; see :func:`occlusion_plan` for the
    defaults. The occluded copies of several samples and patches go to ``score_fn`` together, at most
    ``options.batch_size`` per call, on ``x``'s device.

    On feature vectors ``[N, F]`` the patch is one feature: each feature gets
    ``p_c(x) - p_c(x with that feature set to the baseline)``, and ``window``/``stride`` are not read
    (a feature has no neighbours whose occlusion would mean something together).

    Args:
        x: Inputs ``[N, C, H, W]`` or ``[N, F]``.
        target: Class to explain per sample, ``[N]``.
        gradient_model: Unused (part of the common signature).
        score_fn: Batch -> logits, without gradients; may return a NumPy array.
        options: Reads ``window`` and ``stride`` (images only), ``baseline`` and ``batch_size``.
        seed: Unused; the method is deterministic.

    Returns:
        Signed attribution (positive: occluding the pixel or feature lowers the probability), same shape
        as ``x``.
    """
    target = check_batch(x, target)
    x = x.detach()
    plan = occlusion_plan(tuple(x.shape[1:]), options)
    masks = _patch_masks(tuple(x.shape[1:]), plan, x.device)
    drops = _summed_drops(x, target, masks, score_fn, options)
    attribution = drops / masks.flatten(1).sum(dim=0).to(x.dtype)
    return attribution.view(len(x), *masks.shape[1:]).expand_as(x).contiguous()


def _summed_drops(
    x: torch.Tensor, target: torch.Tensor, masks: torch.Tensor, score_fn: ScoreFn, options: AttributionOptions
) -> torch.Tensor:
    """``[N, units]``: per unit (pixel or feature), the sum of the probability drops of the patches covering
    it. The occluded copies of as many samples and patches as fit go to ``score_fn`` in one call."""
    probabilities = target_probability(score_fn, x.device)
    batch_size = options.batch_size
    unoccluded = torch.cat([probabilities(x[part]) for part in chunks(len(x), batch_size)])
    unoccluded = unoccluded.gather(1, target[:, None])
    baseline = compact_baseline(x, options.baseline)
    flat_masks = masks.flatten(1).to(x.dtype)
    patches_per_call = min(len(masks), batch_size)
    sums = torch.zeros((len(x), flat_masks.shape[1]), dtype=x.dtype, device=x.device)
    for rows in chunks(len(x), max(1, batch_size // patches_per_call)):
        sample = x[rows, None]
        fill = baseline[rows, None] if isinstance(baseline, torch.Tensor) else baseline
        for patches in chunks(len(masks), patches_per_call):
            occluded = torch.where(masks[None, patches], fill, sample).flatten(0, 1)
            scores = probabilities(occluded).view(len(sample), patches.stop - patches.start, -1)
            occluded_target = scores.gather(2, target[rows, None, None].expand(-1, scores.shape[1], 1))
            sums[rows] += (unoccluded[rows] - occluded_target[..., 0]).to(x.dtype) @ flat_masks[patches]
    return sums
