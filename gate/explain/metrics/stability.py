"""Feature-importance stability: does the ranking of features by importance survive small input noise?"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gate.errors import CheckError
from gate.explain._utils import check_batch, spearman
from gate.explain.options import AttributionOptions, ScoreFn
from gate.explain.registry import attribute
from gate.randomness.streams import SampleRandom

NOISE_STREAM = 0x57AB_1E00
"""Names this metric's family of per-sample random streams (gate/randomness/streams.py)."""


def rank_stability(reference: torch.Tensor, perturbed: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over ``perturbed`` of the per-sample Spearman correlation between ``|reference|`` and ``|p|``.

    Importance is the magnitude of an attribution, whatever its sign, so ranks are of absolute values
    (ties share their average rank; a constant map scores 0 against anything).

    Args:
        reference: Attributions ``[N, ...]`` of the unperturbed inputs.
        perturbed: One or more attributions of the same shape, of perturbed inputs.

    Returns:
        Mean rank correlation per sample ``[N]``, in ``[-1, 1]``.
    """
    if not perturbed:
        raise CheckError("rank_stability needs at least one perturbed attribution")
    for other in perturbed:
        if other.shape != reference.shape:
            raise CheckError(
                f"perturbed attributions must have the reference's shape {tuple(reference.shape)}; "
                f"got {tuple(other.shape)}"
            )
    correlations = torch.stack([spearman(reference.abs(), other.abs()) for other in perturbed])
    return correlations.mean(dim=0)


def feature_importance_stability(
    method: str,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    gradient_model: nn.Module | None,
    score_fn: ScoreFn,
    options: AttributionOptions | None = None,
    seed: int = 0,
    radius: float = 0.02,
    copies: int = 5,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rank agreement of feature importances between each input and noisy copies of it (higher = stabler).

    Alvarez-Melis & Jaakkola (2018), "On the Robustness of Interpretability Methods", ask that similar
    inputs get similar explanations (they bound the change by a local Lipschitz estimate). What a reader
    of an importance ranking acts on is the order of the features, so the agreement is measured as Krishna
    et al. (2022), "The Disagreement Problem in Explainable Machine Learning", compare explanations: by
    rank correlation. Per sample, the value is the Spearman correlation between ``|A(x)|`` and
    ``|A(x + d_j)|``, averaged over ``copies`` draws ``d_j ~ N(0, radius^2)`` per element. 1 means the
    ranking never moved; near 0, noise the model barely notices reshuffles it.

    Each sample's noise comes from gate's per-sample random streams keyed by ``(seed, index)``
    (:class:`gate.randomness.streams.SampleRandom`), so a value does not depend on batching or sharding.
    Noisy inputs are not clipped to the value range (as in :func:`max_sensitivity`). The target stays
    fixed, and stochastic methods reuse ``seed`` and ``index`` so their own noise is not counted. Images
    are compared element by element (every pixel of every channel is one "feature").

    Args:
        method: A key of :data:`gate.explain.METHODS`.
        x: Inputs ``[N, F]`` or ``[N, C, H, W]``.
        target: Class per sample ``[N]``.
        gradient_model: Differentiable model, or ``None`` for gradient-free methods.
        score_fn: Batch -> logits, without gradients.
        options: Attribution settings.
        seed: Seeds the noise and the method.
        radius: Standard deviation of the Gaussian noise, in input units.
        copies: Noisy copies per sample.
        index: Data set positions ``[N]``; default ``0..N-1`` (then a sample's noise depends on its
            position in ``x``).

    Returns:
        Mean rank correlation per sample ``[N]``, in ``[-1, 1]``.
    """
    if radius < 0 or copies < 1:
        raise CheckError(
            f"feature_importance_stability needs radius >= 0 and copies >= 1; got {radius}, {copies}"
        )
    target = check_batch(x, target)
    options = options if options is not None else AttributionOptions()
    positions = torch.arange(len(x)) if index is None else index

    def explain(inputs: torch.Tensor) -> torch.Tensor:
        return attribute(
            method,
            inputs,
            target,
            gradient_model=gradient_model,
            score_fn=score_fn,
            options=options,
            seed=seed,
            index=index,
        )

    streams = SampleRandom(positions.to(x.device), (seed, NOISE_STREAM))
    perturbed = [
        explain(x + radius * streams.normal(copy, x.shape[1:], dtype=x.dtype)) for copy in range(copies)
    ]
    return rank_stability(explain(x), perturbed)
