"""The image variants of the Backgrounds Challenge (Xiao, Engstrom, Ilyas & Madry 2020), as pure functions.

A sample is split by its mask (1 on the object, 0 on the background; a soft mask is an alpha) into an
object layer and a background layer. ``only_fg`` keeps the object, ``only_bg`` keeps the background, and
the ``mixed_*`` variants paste the object onto another image's background: that image's ``only_bg``.
A removed region is filled with the input range's black or, with ``fill="blur"``, from what remains (a
normalised Gaussian blur of the kept pixels), so the removed content never leaks into the variant.

Partners are chosen per sample from ``(seed, sample index)`` and the labels of the whole selection, so
a sample gets the same partner whatever its batch or shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from gate.randomness.streams import SampleRandom

Fill = Literal["black", "blur"]
Relation = Literal["same", "rand", "next"]
RELATIONS: tuple[Relation, ...] = ("same", "rand", "next")
VARIANTS = ("only_fg", "only_bg", "mixed_same", "mixed_rand", "mixed_next")
PARTNER_STREAM = 0xB6C0  # the partner draws' stream, apart from every other per-sample stream
_PRIOR_WEIGHT = 1e-3  # far from any kept pixel, the blur fill tends to the kept region's mean colour
_BLUR_SIDE = 32  # the blur fill is computed at most this many pixels a side


def _alpha(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The mask ``[N, H, W]`` as an alpha ``[N, 1, H, W]`` in x's dtype, clipped to [0, 1]."""
    return mask.to(x.dtype).clamp(0, 1).unsqueeze(1)


def _gaussian_kernel(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    sigma = max(1.0, size / 8)
    radius = min(size - 1, int(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def _blur(images: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of ``[N, C, H, W]`` with sigma 1/8 of each side, zero outside the image.

    Computed on a copy of at most ``_BLUR_SIDE`` pixels a side (area-averaged) and scaled back up: a blur
    this wide keeps nothing finer, and a 224x224 image costs a small fraction of the full convolution.
    """
    _, channels, height, width = images.shape
    small = (min(height, _BLUR_SIDE), min(width, _BLUR_SIDE))
    out = F.interpolate(images, size=small, mode="area") if small != (height, width) else images
    rows = _gaussian_kernel(small[0], images.dtype, images.device).view(1, 1, -1, 1)
    cols = _gaussian_kernel(small[1], images.dtype, images.device).view(1, 1, 1, -1)
    out = F.conv2d(out, rows.repeat(channels, 1, 1, 1), padding=(rows.shape[2] // 2, 0), groups=channels)
    out = F.conv2d(out, cols.repeat(channels, 1, 1, 1), padding=(0, cols.shape[3] // 2), groups=channels)
    if small == (height, width):
        return out
    return F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)


def fill_from(x: torch.Tensor, keep: torch.Tensor, fill: Fill, black: float) -> torch.Tensor:
    """What replaces the pixels outside ``keep`` (an alpha ``[N, 1, H, W]``): black, or blurred from the kept ones.

    The blur is a normalised convolution, ``blur(x * keep) / blur(keep)``, pulled towards the kept
    region's mean colour where few kept pixels are near; an image with nothing kept is filled black.
    """
    if fill == "black":
        return torch.full_like(x, black)
    total = keep.sum(dim=(2, 3), keepdim=True)
    mean = torch.where(total > 0, (x * keep).sum(dim=(2, 3), keepdim=True) / total.clamp_min(1e-12), black)
    numerator = _blur(x * keep) + _PRIOR_WEIGHT * mean
    filled = numerator / (_blur(keep) + _PRIOR_WEIGHT)
    return torch.where(total > 0, filled, torch.full_like(x, black))


def only_fg(x: torch.Tensor, mask: torch.Tensor, fill: Fill = "black", black: float = 0.0) -> torch.Tensor:
    """The object alone: the background removed (``x`` ``[N, C, H, W]``, ``mask`` ``[N, H, W]``)."""
    alpha = _alpha(mask, x)
    return alpha * x + (1 - alpha) * fill_from(x, alpha, fill, black)


def only_bg(x: torch.Tensor, mask: torch.Tensor, fill: Fill = "black", black: float = 0.0) -> torch.Tensor:
    """The background alone: the object removed. Also a partner's background in the mixed variants."""
    alpha = _alpha(mask, x)
    return (1 - alpha) * x + alpha * fill_from(x, 1 - alpha, fill, black)


def paste(x: torch.Tensor, mask: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """The object of ``x`` on ``background`` (a partner's ``only_bg``): a mixed variant."""
    alpha = _alpha(mask, x)
    return alpha * x + (1 - alpha) * background


def next_classes(classes: Sequence[int]) -> dict[int, int]:
    """mixed_next's fixed permutation: each class present to the next present one, cyclically.

    With every class 0..C-1 present this is ``(y + 1) mod C``; absent classes are skipped.
    """
    ordered = sorted(set(int(c) for c in classes))
    return {c: ordered[(i + 1) % len(ordered)] for i, c in enumerate(ordered)}


def choose_partners(
    index: torch.Tensor,
    labels: torch.Tensor,
    pool_index: np.ndarray,
    pool_labels: np.ndarray,
    relation: Relation,
    *,
    seed: int,
) -> np.ndarray:
    """The data set index of each sample's partner, drawn from ``(seed, sample index)`` only.

    Args:
        index: the samples' data set indices ``[N]``.
        labels: their labels ``[N]``.
        pool_index: the data set indices the partners are drawn from (the whole selection, unsharded).
        pool_labels: the pool's labels, aligned with ``pool_index``.
        relation: ``same`` (another sample of the same class; the sample itself when its class has no
            other), ``rand`` (a sample of a uniformly drawn other class present in the pool) or ``next``
            (a sample of the next class, :func:`next_classes`).
        seed: the run's seed.

    Returns:
        int64 ``[N]``: partner data set indices.

    Raises:
        ValueError: a sample's class is not in the pool, or ``rand``/``next`` with one class in the pool.
    """
    pool_index = np.asarray(pool_index, dtype=np.int64)
    pool_labels = np.asarray(pool_labels, dtype=np.int64)
    members = {int(c): np.sort(pool_index[pool_labels == c]) for c in np.unique(pool_labels)}
    if relation != "same" and len(members) < 2:
        raise ValueError(f"mixed_{relation} needs samples of at least two classes; the selection has one")
    following = next_classes(members)
    stream = (seed, PARTNER_STREAM, RELATIONS.index(relation))
    draws = SampleRandom(index.cpu(), stream).uniform(0, (2,), torch.float64).numpy()
    partners = np.empty(len(index), dtype=np.int64)
    for row, (sample, label) in enumerate(zip(index.tolist(), labels.tolist(), strict=True)):
        if label not in members:
            raise ValueError(f"sample {sample}'s class {label} is not in the selection it was drawn from")
        if relation == "same":
            candidates = members[label][members[label] != sample]
            if candidates.size == 0:
                partners[row] = sample
                continue
        elif relation == "rand":
            others = [c for c in members if c != label]
            candidates = members[others[int(draws[row, 0] * len(others))]]
        else:
            candidates = members[following[label]]
        partners[row] = candidates[int(draws[row, 1] * candidates.size)]
    return partners
