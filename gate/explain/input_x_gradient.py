"""Input x gradient: the element-wise product of the input and the target logit's gradient."""

from __future__ import annotations

import torch
from captum.attr import InputXGradient
from torch import nn

from gate.explain._utils import check_batch, chunks, leaf_input, require_gradient_model
from gate.explain.options import AttributionOptions, ScoreFn


def input_x_gradient(
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    gradient_model: nn.Module | None,
    score_fn: ScoreFn,
    options: AttributionOptions,
    seed: int = 0,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Signed attribution ``x * d S_c / d x`` of the target logit ``S_c``.

    Shrikumar, Greenside, Shcherbina & Kundaje (2016), "Not Just a Black Box: Learning Important Features
    Through Propagating Activation Differences" (gradient * input). For a linear model it is exactly each
    feature's contribution ``w_c * x``. Computed with Captum's ``InputXGradient``.

    Args:
        x: Inputs ``[N, C, H, W]`` or ``[N, F]``.
        target: Class to explain per sample, ``[N]``.
        gradient_model: Differentiable model returning logits; required.
        score_fn: Unused (part of the common signature).
        options: Only ``batch_size`` is read.
        seed: Unused; the method is deterministic.

    Returns:
        Signed attribution, same shape as ``x``.
    """
    model = require_gradient_model("input_x_gradient", gradient_model)
    target = check_batch(x, target)
    explainer = InputXGradient(model)
    parts = [
        explainer.attribute(leaf_input(x[part]), target=target[part]).detach()
        for part in chunks(len(x), options.batch_size)
    ]
    return torch.cat(parts)
