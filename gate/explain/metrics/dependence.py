"""Whether a model's output depends on its input at all: below that floor an attribution metric means nothing.

A constant model satisfies some metrics perfectly: its deletion curve is flat (a low deletion AUC), its
attributions are all zero (a randomisation similarity of 0, a max-sensitivity of 0). These functions measure
how far the target probability moves, so a check can refuse to judge such a model.
"""

from __future__ import annotations

import torch

from gate.explain._utils import check_batch, chunks, target_probability
from gate.explain.options import ScoreFn

FLAT_TOLERANCE = 1e-3
"""Largest change of the target probability that still counts as "does not depend on the input". An area
under a curve that moves less than this differs from a constant model's by less than this, whatever the
attribution ranked first."""


def curve_spread(probabilities: torch.Tensor) -> torch.Tensor:
    """How far each curve ``[N, S]`` of target probabilities moves: ``max - min`` per sample, ``[N]``."""
    return (probabilities.amax(dim=1) - probabilities.amin(dim=1)).float()


def probability_change(
    score_fn: ScoreFn,
    x: torch.Tensor,
    target: torch.Tensor,
    reference: torch.Tensor,
    *,
    batch_size: int = 256,
) -> torch.Tensor:
    """``|p_c(x) - p_c(reference)|`` per sample ``[N]``: the target-class softmax probability of each input
    against its reference (e.g. the all-baseline input), the end points of a deletion curve."""
    target = check_batch(x, target)
    probabilities = target_probability(score_fn, x.device)
    changes = []
    for part in chunks(len(x), batch_size):
        both = probabilities(torch.cat([x[part], reference[part].to(x.device, x.dtype)]))
        chosen = both.gather(1, target[part].repeat(2)[:, None])[:, 0]
        changes.append((chosen[: len(chosen) // 2] - chosen[len(chosen) // 2 :]).abs())
    return torch.cat(changes).float()


def ignores_input(changes: torch.Tensor, tolerance: float = FLAT_TOLERANCE) -> bool:
    """Whether no sample's target probability moved by ``tolerance`` or more (``changes`` from
    :func:`curve_spread` or :func:`probability_change`)."""
    return bool(changes.numel() > 0 and changes.max() < tolerance)
