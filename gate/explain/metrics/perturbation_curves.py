"""Deletion and insertion curves: how fast the target probability falls (rises) as top-ranked pixels or
features go (come)."""

from __future__ import annotations

import torch

from gate.errors import CheckError
from gate.explain._utils import check_batch, chunks, is_features, target_probability, unit_relevance
from gate.explain.options import ScoreFn


def _reference(x: torch.Tensor, baseline: float | torch.Tensor) -> torch.Tensor:
    if isinstance(baseline, torch.Tensor):
        if baseline.shape != x.shape:
            raise CheckError(
                f"baseline must have the input's shape {tuple(x.shape)}; got {tuple(baseline.shape)}"
            )
        return baseline.to(x.device, x.dtype)
    return torch.full_like(x, float(baseline))


def probability_curve(
    score_fn: ScoreFn,
    start: torch.Tensor,
    end: torch.Tensor,
    target: torch.Tensor,
    attribution: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target probability as units switch from ``start`` to ``end`` in decreasing attribution order.

    The units of images ``[N, C, H, W]`` are pixels, spatial positions (all channels switch together),
    ranked by the channel-summed attribution (ties keep raster order); those of feature vectors ``[N, F]``
    are the features, ranked by their attribution (ties keep column order). After step ``j`` of ``steps``
    the top ``round(j * U / steps)`` of the ``U`` units are switched.

    Returns:
        ``(fractions [steps + 1], probabilities [N, steps + 1])``: the share of units switched, and the
        target-class softmax probability at each step.
    """
    if attribution.shape != start.shape:
        raise CheckError(
            f"attribution must have the input's shape {tuple(start.shape)}; got {tuple(attribution.shape)}"
        )
    if steps < 1 or batch_size < 1:
        raise CheckError(f"steps and batch_size must be positive; got {steps} and {batch_size}")
    n = len(start)
    # How a [N, U] selection of units broadcasts over one sample: over the channels of a pixel, or as is.
    unit_layout = tuple(start.shape[1:]) if is_features(start) else (1, *start.shape[2:])
    relevance = unit_relevance(attribution.to(start.device))
    units = relevance.shape[1]
    steps = min(steps, units)
    counts = torch.round(torch.arange(steps + 1, dtype=torch.float64) * units / steps).long().to(start.device)
    order = relevance.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(units, device=order.device).expand(n, -1))
    probabilities = target_probability(score_fn, start.device)
    curve = torch.empty((n, steps + 1), device=start.device)
    samples_per_call = max(1, batch_size // (steps + 1))
    for part in chunks(n, samples_per_call):
        switched = (rank[part, None, :] < counts[None, :, None]).view(-1, steps + 1, *unit_layout)
        images = torch.where(switched, end[part, None], start[part, None]).flatten(0, 1)
        scores = torch.cat([probabilities(images[batch]) for batch in chunks(len(images), batch_size)])
        batch_target = target[part].repeat_interleave(steps + 1)
        curve[part] = scores.gather(1, batch_target[:, None]).view(-1, steps + 1)
    return counts.double() / units, curve


def deletion_auc(
    score_fn: ScoreFn,
    x: torch.Tensor,
    target: torch.Tensor,
    attribution: torch.Tensor,
    *,
    baseline: float | torch.Tensor = 0.0,
    steps: int = 64,
    batch_size: int = 256,
) -> torch.Tensor:
    """Area under the deletion curve (lower = more faithful).

    Petsiuk, Das & Saenko (2018), "RISE: Randomized Input Sampling for Explanation of Black-box Models":
    pixels (for feature vectors: features) are replaced by ``baseline`` in decreasing order of attribution
    and the target-class probability (softmax of ``score_fn``'s logits) is integrated by the trapezoid rule
    over the fraction removed, from 0 to 1. A faithful map removes the evidence first, so the probability
    drops early.

    Args:
        score_fn: Batch -> logits ``[N, classes]``, called without gradients.
        x: Inputs ``[N, C, H, W]`` or ``[N, F]``.
        target: Class per sample ``[N]``.
        attribution: Attribution of ``target``, same shape as ``x``.
        baseline: Value (or tensor shaped like ``x``) that replaces removed pixels or features; the paper uses 0.
        steps: Points on the curve after the start (capped at the number of units, ``H * W`` pixels or
            ``F`` features; at the cap the curve goes unit by unit).
        batch_size: Most images per ``score_fn`` call.

    Returns:
        Area per sample ``[N]``, in ``[0, 1]``.
    """
    return curve_area(
        *deletion_curve(
            score_fn, x, target, attribution, baseline=baseline, steps=steps, batch_size=batch_size
        )
    )


def insertion_auc(
    score_fn: ScoreFn,
    x: torch.Tensor,
    target: torch.Tensor,
    attribution: torch.Tensor,
    *,
    baseline: float | torch.Tensor = 0.0,
    steps: int = 64,
    batch_size: int = 256,
) -> torch.Tensor:
    """Area under the insertion curve (higher = more faithful).

    Petsiuk, Das & Saenko (2018): starting from ``baseline`` (the paper uses a blurred copy of the
    image, see :func:`gate.explain.gaussian_blur`), the pixels (features) of ``x`` are put back in
    decreasing order of attribution and the target-class probability is integrated by the trapezoid rule over the fraction
    inserted, from 0 to 1.

    Args:
        score_fn: Batch -> logits ``[N, classes]``, called without gradients.
        x: Inputs ``[N, C, H, W]`` or ``[N, F]``.
        target: Class per sample ``[N]``.
        attribution: Attribution of ``target``, same shape as ``x``.
        baseline: Starting canvas: a value or a tensor shaped like ``x`` (e.g. ``gaussian_blur(x, 1.0)``).
        steps: Points on the curve after the start (capped at ``H * W`` pixels or ``F`` features).
        batch_size: Most images per ``score_fn`` call.

    Returns:
        Area per sample ``[N]``, in ``[0, 1]``.
    """
    return curve_area(
        *insertion_curve(
            score_fn, x, target, attribution, baseline=baseline, steps=steps, batch_size=batch_size
        )
    )


def deletion_curve(
    score_fn: ScoreFn,
    x: torch.Tensor,
    target: torch.Tensor,
    attribution: torch.Tensor,
    *,
    baseline: float | torch.Tensor = 0.0,
    steps: int = 64,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The curve :func:`deletion_auc` integrates: ``(fractions removed [S], probabilities [N, S])``."""
    target = check_batch(x, target)
    return probability_curve(
        score_fn, x, _reference(x, baseline), target, attribution, steps=steps, batch_size=batch_size
    )


def insertion_curve(
    score_fn: ScoreFn,
    x: torch.Tensor,
    target: torch.Tensor,
    attribution: torch.Tensor,
    *,
    baseline: float | torch.Tensor = 0.0,
    steps: int = 64,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The curve :func:`insertion_auc` integrates: ``(fractions inserted [S], probabilities [N, S])``."""
    target = check_batch(x, target)
    return probability_curve(
        score_fn, _reference(x, baseline), x, target, attribution, steps=steps, batch_size=batch_size
    )


def curve_area(fractions: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """Trapezoid-rule area under each curve ``[N, S]`` over ``fractions [S]``, as ``[N]``."""
    return torch.trapezoid(probabilities.double(), fractions, dim=1).float()
