"""Saliency: the absolute gradient of the target logit with respect to the input."""

from __future__ import annotations

import torch
from captum.attr import Saliency
from torch import nn

from gate.explain._utils import check_batch, chunks, leaf_input, require_gradient_model
from gate.explain.options import AttributionOptions, ScoreFn


def saliency(
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    gradient_model: nn.Module | None,
    score_fn: ScoreFn,
    options: AttributionOptions,
    seed: int = 0,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Absolute input gradient of the target class score.

    Simonyan, Vedaldi & Zisserman (2014), "Deep Inside Convolutional Networks: Visualising Image
    Classification Models and Saliency Maps". The map is ``|d S_c / d x|`` with ``S_c`` the unnormalised
    class score (logit); like the paper we keep the magnitude and drop the sign, so the map says how much a
    pixel matters, not in which direction (use ``input_x_gradient`` or ``integrated_gradients`` for signed
    evidence). Computed with Captum's ``Saliency``.

    Args:
        x: Inputs ``[N, C, H, W]`` or ``[N, F]``.
        target: Class to explain per sample, ``[N]``.
        gradient_model: Differentiable model returning logits; required.
        score_fn: Unused (part of the common signature).
        options: Only ``batch_size`` is read.
        seed: Unused; the method is deterministic.

    Returns:
        Non-negative attribution, same shape as ``x``.
    """
    model = require_gradient_model("saliency", gradient_model)
    target = check_batch(x, target)
    explainer = Saliency(model)
    parts = [
        explainer.attribute(leaf_input(x[part]), target=target[part], abs=True).detach()
        for part in chunks(len(x), options.batch_size)
    ]
    return torch.cat(parts)
