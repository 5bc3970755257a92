"""Integrated gradients: the path integral of gradients from a baseline to the input."""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients
from torch import nn

from gate.explain._utils import (
    check_batch,
    chunks,
    compact_baseline,
    leaf_input,
    require_gradient_model,
    resolve_baseline,
)
from gate.explain.options import AttributionOptions, ScoreFn


def integrated_gradients(
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    gradient_model: nn.Module | None,
    score_fn: ScoreFn,
    options: AttributionOptions,
    seed: int = 0,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Integrated gradients of the target logit along the straight path from ``options.baseline`` to ``x``.

    Sundararajan, Taly & Yan (2017), "Axiomatic Attribution for Deep Networks". Satisfies completeness:
    attributions sum to ``S_c(x) - S_c(baseline)`` up to the quadrature error of ``options.steps``
    Gauss-Legendre points. All steps of a sample are evaluated in batches of up to ``options.batch_size``
    inputs (Captum's ``internal_batch_size``).

    Args:
        x: Inputs ``[N, C, H, W]`` or ``[N, F]``.
        target: Class to explain per sample, ``[N]``.
        gradient_model: Differentiable model returning logits; required.
        score_fn: Unused (part of the common signature).
        options: Reads ``steps``, ``baseline`` and ``batch_size``.
        seed: Unused; the method is deterministic.

    Returns:
        Signed attribution, same shape as ``x``.
    """
    model = require_gradient_model("integrated_gradients", gradient_model)
    target = check_batch(x, target)
    explainer = IntegratedGradients(model)
    baseline = compact_baseline(x, options.baseline)
    parts = []
    # Captum evaluates batch_size // N path points per pass, so N <= batch_size keeps passes in bounds.
    for part in chunks(len(x), options.batch_size):
        attribution = explainer.attribute(
            leaf_input(x[part]),
            baselines=baseline
            if isinstance(baseline, float)
            else resolve_baseline(x[part], options.baseline),
            target=target[part],
            n_steps=options.steps,
            internal_batch_size=options.batch_size,
        )
        parts.append(attribution.detach())
    return torch.cat(parts)
