"""Per-sample losses the attacks maximise: cross-entropy, DLR (Croce & Hein 2020) and the margin."""

from __future__ import annotations

import torch
from torch.nn import functional


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """CE to the true label (untargeted), or minus CE to ``target`` (targeted); larger is stronger."""
    if target is None:
        return functional.cross_entropy(logits, y, reduction="none")
    return -functional.cross_entropy(logits, target, reduction="none")


def total_cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None
) -> torch.Tensor:
    """:func:`cross_entropy` summed over the batch, in one reduction (for steps on the gradient alone)."""
    if target is None:
        return functional.cross_entropy(logits, y, reduction="sum")
    return -functional.cross_entropy(logits, target, reduction="sum")


def _best_other(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The largest logit among the classes other than ``y``."""
    return logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)


def dlr(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020, eq. 6 and its targeted form eq. 7).

    Shift- and scale-invariant in the logits, so it does not suffer from the gradient masking that
    saturated cross-entropy shows; the targeted form needs at least four classes.
    """
    ordered = logits.sort(dim=1, descending=True).values
    true_logit = logits.gather(1, y[:, None])[:, 0]
    if target is None:
        scale = ordered[:, 0] - ordered[:, 2] + 1e-12
        return -(true_logit - _best_other(logits, y)) / scale
    target_logit = logits.gather(1, target[:, None])[:, 0]
    scale = ordered[:, 0] - 0.5 * (ordered[:, 2] + ordered[:, 3]) + 1e-12
    return -(true_logit - target_logit) / scale


def total_dlr(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`dlr` summed over the batch."""
    return dlr(logits, y, target).sum()


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{j != y} z_j``: positive while the sample is still classified correctly."""
    return logits.gather(1, y[:, None])[:, 0] - _best_other(logits, y)
