"""Occlusion: the drop in target probability when a sliding patch (or one feature) is replaced by a baseline."""

from __future__ import annotations

import torch
from captum.attr import Occlusion
from torch import nn

from gate.explain._utils import check_batch, chunks, compact_baseline, is_features, target_probability
from gate.explain.options import AttributionOptions, ScoreFn


def occlusion(
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    gradient_model: nn.Module | None,
    score_fn: ScoreFn,
    options: AttributionOptions,
    seed: int = 0,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Occlusion sensitivity of the target-class probability.

    Zeiler & Fergus (2014), "Visualizing and Understanding Convolutional Networks", Sec. 4.2: a
    ``window x window`` patch (all channels) slides with ``stride``; each pixel gets the mean of
    ``p_c(x) - p_c(x with the patch set to the baseline)`` over the patches covering it. The probability is
    the softmax of ``score_fn``'s logits, as in the paper. Only ``score_fn`` is called, so a model available
    only as ONNX can be explained. Computed with Captum's ``Occlusion``; patches are evaluated
    ``perturbations_per_eval`` at a time so each call holds about ``options.batch_size`` inputs.

    On feature vectors ``[N, F]`` the patch is one feature: each feature gets
    ``p_c(x) - p_c(x with that feature set to the baseline)``, and ``window``/``stride`` are not read
    (a feature has no neighbours whose occlusion would mean something together).

    Args:
        x: Inputs ``[N, C, H, W]`` or ``[N, F]``.
        target: Class to explain per sample, ``[N]``.
        gradient_model: Unused (part of the common signature).
        score_fn: Batch -> logits, without gradients; may return a NumPy array.
        options: Reads ``window`` and ``stride`` (images only), ``baseline`` and ``batch_size``.
        seed: Unused; the method is deterministic.

    Returns:
        Signed attribution (positive: occluding the pixel or feature lowers the probability), same shape
        as ``x``.
    """
    target = check_batch(x, target)
    if is_features(x):
        window, strides = (1,), (1,)
    else:
        channels = x.shape[1]
        window = (channels, options.window, options.window)
        strides = (channels, options.stride, options.stride)
    explainer = Occlusion(target_probability(score_fn, x.device))
    samples_per_call = min(len(x), options.batch_size)
    parts = []
    for part in chunks(len(x), samples_per_call):
        batch = x[part].detach()
        attribution = explainer.attribute(
            batch,
            sliding_window_shapes=window,
            strides=strides,
            baselines=compact_baseline(batch, options.baseline),
            target=target[part],
            perturbations_per_eval=max(1, options.batch_size // len(batch)),
        )
        parts.append(attribution.detach())
    return torch.cat(parts)
