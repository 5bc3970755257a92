"""Helpers shared by the attribution methods and metrics: input checks, baselines, batching, ranks.

Two input layouts are explained: images ``[N, C, H, W]`` and feature vectors ``[N, F]`` (tabular models).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from gate.errors import CheckError
from gate.explain.options import Baseline, ScoreFn


def is_features(x: torch.Tensor) -> bool:
    """Whether ``x`` is a batch of feature vectors ``[N, F]`` rather than images ``[N, C, H, W]``."""
    return x.dim() == 2


def check_batch(x: torch.Tensor, target: torch.Tensor | int) -> torch.Tensor:
    """Validate a batch of images ``[N, C, H, W]`` or features ``[N, F]``; return ``target`` as int64 ``[N]``
    on ``x``'s device."""
    if x.dim() not in (2, 4):
        raise CheckError(
            f"attributions need images [N, C, H, W] or features [N, F]; got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise CheckError(f"attributions need a floating-point input; got dtype {x.dtype}")
    target = torch.as_tensor(target, dtype=torch.long, device=x.device)
    if target.dim() == 0:
        target = target.expand(len(x))
    if target.shape != (len(x),):
        raise CheckError(
            f"target must hold one class per sample, shape [{len(x)}]; got {tuple(target.shape)}"
        )
    return target


def require_images(what: str, x: torch.Tensor) -> None:
    """Raise a :class:`CheckError` when ``what`` (an image-only method or metric) is given features."""
    if x.dim() != 4:
        raise CheckError(
            f"{what} is defined on images [N, C, H, W] (grids, windows or masks of pixels); "
            f"got shape {tuple(x.shape)}"
        )


def require_gradient_model(method: str, gradient_model: nn.Module | None) -> nn.Module:
    """Return ``gradient_model`` or raise a :class:`CheckError` that names the method needing it."""
    if gradient_model is None:
        raise CheckError(
            f"method {method} needs gradients; the model has no differentiable twin: "
            "provide a PyTorch model, or choose a gradient-free method (occlusion, rise)"
        )
    return gradient_model


def _mean_baseline_refused(x: torch.Tensor) -> None:
    # An image's per-channel mean keeps its brightness; a feature vector has no channels, and the mean of
    # differently scaled features is no reference value for any of them.
    if is_features(x):
        raise CheckError(
            "baseline 'mean' (each image's per-channel mean) is defined for images; for features [N, F] "
            "give a number (a reference value of the scaled features) or 'zero'"
        )


def resolve_baseline(x: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    """The reference input, same shape as ``x``: a constant, zeros, or each image's per-channel mean."""
    if baseline == "zero":
        return torch.zeros_like(x)
    if baseline == "mean":
        _mean_baseline_refused(x)
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()
    return torch.full_like(x, float(baseline))


def compact_baseline(x: torch.Tensor, baseline: Baseline) -> float | torch.Tensor:
    """The reference input in its smallest broadcastable form: a number, or per-sample means ``[N, C, 1, 1]``.

    Saves building (and Captum from reading) a full-size tensor when the baseline is a constant.
    """
    if baseline == "zero":
        return 0.0
    if baseline == "mean":
        _mean_baseline_refused(x)
        return x.mean(dim=(2, 3), keepdim=True)
    return float(baseline)


def leaf_input(x: torch.Tensor) -> torch.Tensor:
    """A detached copy that requires grad, so methods never flip ``requires_grad`` on the caller's tensor."""
    return x.detach().clone().requires_grad_(True)


def target_probability(score_fn: ScoreFn, device: torch.device) -> ScoreFn:
    """Wrap ``score_fn`` to return softmax probabilities as a tensor on ``device``, without gradients.

    The wrapped function accepts any array-like output (e.g. NumPy from ONNX Runtime).
    """

    def probabilities(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = torch.as_tensor(score_fn(batch), device=device)
        return torch.softmax(logits.float(), dim=-1)

    return probabilities


def chunks(total: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` covering ``range(total)``."""
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def cpu_generator(seed: int) -> torch.Generator:
    """A seeded CPU generator; random draws are made on CPU then moved, so CPU and CUDA runs agree."""
    return torch.Generator().manual_seed(seed)


def channel_sum(attribution: torch.Tensor) -> torch.Tensor:
    """Sum ``[N, C, H, W]`` over channels to one relevance map per sample ``[N, H, W]``."""
    return attribution.sum(dim=1)


def unit_relevance(attribution: torch.Tensor) -> torch.Tensor:
    """One relevance per unit the perturbation metrics switch, ``[N, U]``.

    The units are pixels for images (all channels together, so their relevance is the channel sum) and
    the features themselves for feature vectors.
    """
    return attribution if is_features(attribution) else channel_sum(attribution).flatten(1)


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks (1-based) of each row of ``values [N, D]``, ties sharing their average rank (as SciPy's rankdata)."""
    ranks = torch.empty_like(values, dtype=torch.float64)
    for row, row_values in enumerate(values):
        _, inverse, counts = torch.unique(row_values, sorted=True, return_inverse=True, return_counts=True)
        upper = counts.cumsum(0).double()
        ranks[row] = (upper - (counts.double() - 1) / 2)[inverse]
    return ranks


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per sample between ``a`` and ``b`` (any shape ``[N, ...]``), as ``[N]``.

    A constant row has no defined correlation; it scores 0 (no shared ordering).
    """
    ra = average_ranks(a.flatten(1).detach())
    rb = average_ranks(b.flatten(1).detach())
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    denominator = ra.norm(dim=1) * rb.norm(dim=1)
    correlation = (ra * rb).sum(dim=1) / denominator.clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where(denominator > 0, correlation, torch.zeros_like(correlation)).float()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each channel of ``x [N, C, H, W]`` with a Gaussian of ``sigma`` pixels (reflect padding).

    The blurred image is the insertion baseline of Petsiuk et al. (2018).
    """
    if sigma <= 0:
        return x.clone()
    radius = max(1, int(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    padding = min(radius, x.shape[2] - 1, x.shape[3] - 1)
    out = nn.functional.pad(x, (padding, padding, padding, padding), mode="reflect")
    if padding < radius:  # images smaller than the kernel: pad the rest by replication
        extra = radius - padding
        out = nn.functional.pad(out, (extra, extra, extra, extra), mode="replicate")
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    out = nn.functional.conv2d(out, horizontal, groups=channels)
    return nn.functional.conv2d(out, vertical, groups=channels)
