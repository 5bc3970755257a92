"""Max-sensitivity: how much an attribution changes under small input perturbations."""

from __future__ import annotations

import torch
from torch import nn

from gate.errors import CheckError
from gate.explain._utils import check_batch, cpu_generator
from gate.explain.options import AttributionOptions, ScoreFn
from gate.explain.registry import attribute
from gate.randomness.generators import sample_generators


def max_sensitivity(
    method: str,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    gradient_model: nn.Module | None,
    score_fn: ScoreFn,
    options: AttributionOptions | None = None,
    seed: int = 0,
    radius: float = 0.05,
    perturbations: int = 10,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Largest relative change of the attribution within an L-infinity ball around each input.

    Yeh, Hsieh, Suggala, Inouye & Ravikumar (2019), "On the (In)fidelity and Sensitivity of Explanations":
    ``max_j ||Phi(x + d_j) - Phi(x)||_2 / ||Phi(x)||_2`` over ``perturbations`` draws ``d_j`` uniform in
    ``[-radius, radius]^d`` (estimated by sampling, as in the paper). The paper's definition has no
    denominator; dividing by the attribution's Frobenius norm (as Quantus does) makes the value comparable
    across methods and models whose attributions differ in scale: 0.1 means a 10% change. Perturbed inputs
    are not clipped to the value range, to keep the ball exact. The target stays fixed, and stochastic
    methods reuse ``seed`` so their own noise is not counted as sensitivity.

    Args:
        method: A key of :data:`gate.explain.METHODS`.
        x: Inputs ``[N, C, H, W]`` or ``[N, F]``.
        target: Class per sample ``[N]``.
        gradient_model: Differentiable model, or ``None`` for gradient-free methods.
        score_fn: Batch -> logits, without gradients.
        options: Attribution settings.
        seed: Seeds the perturbations and the method.
        radius: L-infinity radius of the perturbations, in input units.
        perturbations: Number of random perturbations per sample.

        index: Data set positions ``[N]``; when given, a sample's perturbations (and a stochastic method's
            noise) depend only on ``(seed, index)``, so sharded runs reproduce unsharded ones.

    Returns:
        Max relative change per sample ``[N]`` (large where the attribution is all zeros).
    """
    if radius < 0 or perturbations < 1:
        raise CheckError(
            f"max_sensitivity needs radius >= 0 and perturbations >= 1; got {radius}, {perturbations}"
        )
    target = check_batch(x, target)
    options = options if options is not None else AttributionOptions()

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

    reference = explain(x).flatten(1).double()
    norm = reference.norm(dim=1).clamp_min(1e-12)
    generators = None if index is None else sample_generators(seed, index, stream="max-sensitivity")
    generator = cpu_generator(seed)
    worst = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    for _ in range(perturbations):
        if generators is None:
            uniform = torch.rand(x.shape, generator=generator)
        else:  # each sample's perturbations depend on (seed, index) only, not on its batch or shard
            uniform = torch.stack([torch.rand(x.shape[1:], generator=g) for g in generators])
        delta = (uniform * 2 - 1) * radius
        perturbed = explain(x + delta.to(x.device, x.dtype)).flatten(1).double()
        worst = torch.maximum(worst, (perturbed - reference).norm(dim=1) / norm)
    return worst.float()
