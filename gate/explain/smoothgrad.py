"""SmoothGrad: the input gradient averaged over noisy copies of the input."""

from __future__ import annotations

import torch
from torch import nn

from gate.explain._utils import check_batch, chunks, cpu_generator, require_gradient_model
from gate.explain.options import AttributionOptions, ScoreFn
from gate.randomness.generators import sample_generators


def smoothgrad(
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    gradient_model: nn.Module | None,
    score_fn: ScoreFn,
    options: AttributionOptions,
    seed: int = 0,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean gradient of the target logit over ``options.samples`` copies of ``x`` with Gaussian noise.

    Smilkov, Thorat, Kim, Viégas & Wattenberg (2017), "SmoothGrad: removing noise by adding noise":
    ``mean_i grad S_c(x + N(0, sigma^2))`` with ``sigma = options.noise * (high - low)`` of
    ``options.value_range``. The average is of signed gradients, as in the paper; take ``abs()`` for the
    magnitude-only picture. Noise is drawn from a CPU generator seeded with ``seed`` (same maps on CPU and
    CUDA, independent of ``batch_size``); gradients of all copies go through the model in batches.

    Same result as Captum's ``NoiseTunnel(Saliency(model), nt_type="smoothgrad")`` with ``abs=False`` up
    to the noise draw; implemented here to batch the copies and to seed without touching the global RNG.

    Args:
        x: Inputs ``[N, C, H, W]`` or ``[N, F]``.
        target: Class to explain per sample, ``[N]``.
        gradient_model: Differentiable model returning logits; required.
        score_fn: Unused (part of the common signature).
        options: Reads ``samples``, ``noise``, ``value_range`` and ``batch_size``.
        seed: Seeds the noise.
        index: Data set positions ``[N]``; when given, each sample's noise depends only on ``(seed, index)``.

    Returns:
        Signed attribution, same shape as ``x``.
    """
    model = require_gradient_model("smoothgrad", gradient_model)
    target = check_batch(x, target)
    low, high = options.value_range
    sigma = options.noise * (high - low)
    copy_shape = (options.samples, *x.shape[1:])
    if index is None:
        # One equal-sized draw per sample, in order: the noise does not depend on how samples are chunked.
        shared = cpu_generator(seed)
        generators = [shared] * len(x)
    else:
        generators = sample_generators(seed, index, stream="smoothgrad")
    samples_per_call = max(1, options.batch_size // options.samples)
    parts = []
    for part in chunks(len(x), samples_per_call):
        batch = x[part].detach()
        noise = torch.stack([torch.randn(copy_shape, generator=g) for g in generators[part]]) * sigma
        noisy = (batch[:, None] + noise.to(device=x.device, dtype=x.dtype)).flatten(0, 1)
        noisy_target = target[part].repeat_interleave(options.samples)
        gradients = torch.empty_like(noisy)
        for sub in chunks(len(noisy), options.batch_size):
            inputs = noisy[sub].clone().requires_grad_(True)
            score = model(inputs).gather(1, noisy_target[sub, None]).sum()
            (gradients[sub],) = torch.autograd.grad(score, inputs)
        parts.append(gradients.view(len(batch), *copy_shape).mean(dim=1))
    return torch.cat(parts)
