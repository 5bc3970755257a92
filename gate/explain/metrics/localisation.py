"""Localisation metrics: does the attribution fall on a region known to hold the real evidence?"""

from __future__ import annotations

import torch

from gate.errors import CheckError
from gate.explain._utils import channel_sum, require_images


def _check_mask(attribution: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # A mask is a region of pixels; a feature vector has no region (a set of "true" features would be a
    # different metric, with its own ground truth).
    require_images("a localisation metric (roi_mass, pointing_game)", attribution)
    n, _, height, width = attribution.shape
    if mask.shape != (n, height, width):
        raise CheckError(
            f"mask must be [N, H, W] = {[n, height, width]} to match the attribution; got {list(mask.shape)}"
        )
    return mask.to(attribution.device).bool()


def roi_mass(attribution: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Relevance mass accuracy: the share of positive relevance that lies inside ``mask``.

    Arras, Osman & Samek (2022), "CLEVR-XAI: A benchmark dataset for the ground truth evaluation of neural
    network explanations": ``sum(R+ inside mask) / sum(R+)``. Relevance ``R`` is the attribution
    summed over channels, and ``R+`` its positive part, so the metric reads the same for signed and
    magnitude-only methods. A map with no positive relevance scores 0.

    Args:
        attribution: ``[N, C, H, W]``.
        mask: ``[N, H, W]``, nonzero where the real evidence is.

    Returns:
        Share per sample ``[N]``, in ``[0, 1]``.
    """
    inside = _check_mask(attribution, mask)
    relevance = channel_sum(attribution).clamp_min(0).double()
    total = relevance.flatten(1).sum(dim=1)
    within = (relevance * inside).flatten(1).sum(dim=1)
    return torch.where(total > 0, within / total.clamp_min(torch.finfo(torch.float64).tiny), 0.0).float()


def pointing_game(attribution: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pointing game: 1 if the most relevant pixel lies inside ``mask``, else 0.

    Zhang, Bargal, Lin, Brandt, Shen & Sclaroff (2018), "Top-down Neural Attention by Excitation Backprop".
    The most relevant pixel is the maximum of the channel-summed attribution (the first in raster order on
    ties). Unlike the paper there is no 15-pixel tolerance, which would cover a whole 8x8 image.

    Args:
        attribution: ``[N, C, H, W]``.
        mask: ``[N, H, W]``, nonzero where the real evidence is.

    Returns:
        Hits per sample ``[N]`` as 0.0 / 1.0.
    """
    inside = _check_mask(attribution, mask).flatten(1)
    peak = channel_sum(attribution).flatten(1).argmax(dim=1)
    return inside.gather(1, peak[:, None])[:, 0].float()
