"""Common image corruptions (Hendrycks & Dietterich, ICLR 2019) as pure, seeded functions over tensors.

Each corruption has five severity levels whose parameters follow the authors' own tables: the ImageNet-C
table (``make_imagenet_c.py``, made for 224 px) for images at least 128 px on their short side, and the
CIFAR-10-C table (``make_cifar_c.py``, made for 32 px) for smaller images and for tabular features, where a
224 px blur or pixelation would erase the whole image. ``docs/data.md`` lists both tables.

Values are mapped from ``bounds`` to [0, 1], corrupted there (as the reference code does on 8-bit images
scaled to [0, 1]) and mapped back, so the output always lies within ``bounds``. Randomness comes only from
the ``generator`` passed in; ``corrupt_batch`` seeds one generator per sample from ``(seed, index)`` so a
sample is corrupted the same way whatever batch it travels in.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gate.errors import DataError, GateError
from gate.policy.specs import CORRUPTION_INPUTS
from gate.randomness import generators

LEVELS = (1, 2, 3, 4, 5)
LARGE_IMAGE_PX = 128  # from this short side on, the ImageNet-C table applies


class CorruptionSpecError(GateError, ValueError):
    """A corruption name or level outside the table (a ``ValueError`` for callers that treat it as one)."""


Apply = Callable[[torch.Tensor, Any, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Corruption:
    """One corruption: the function on [0, 1] values and its five severity parameters per image size."""

    name: str
    apply: Apply
    imagenet: tuple[Any, ...]
    cifar: tuple[Any, ...]
    images_only: bool
    random: bool

    def parameter(self, level: int, x: torch.Tensor) -> Any:
        """The severity parameter used for ``level`` on inputs shaped like ``x``."""
        large = x.ndim == 4 and min(x.shape[-2:]) >= LARGE_IMAGE_PX
        return (self.imagenet if large else self.cifar)[_checked_level(level) - 1]

    def __call__(
        self,
        x: torch.Tensor,
        level: int,
        *,
        generator: torch.Generator,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> torch.Tensor:
        return corrupt(x, self.name, level, generator=generator, bounds=bounds)


def corrupt(
    x: torch.Tensor,
    name: str,
    level: int,
    *,
    generator: torch.Generator,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Apply corruption ``name`` at ``level`` (1-5) to a batch ``[N, C, H, W]`` (or ``[N, F]`` for noises).

    Args:
        x: values inside ``bounds``; float dtype, any device.
        name: a key of ``CORRUPTIONS``.
        level: severity 1 (mild) to 5 (severe).
        generator: the only source of randomness; draws are made on its device and moved to ``x``'s.
        bounds: the value range of ``x`` (the model's input range).

    Returns:
        A new tensor of ``x``'s shape, dtype and device, inside ``bounds``.

    Raises:
        CorruptionSpecError: unknown name or level.
        DataError: ``x`` has a shape or channel count the corruption cannot handle.
    """
    corruption = _lookup(name)
    low, high = _checked_bounds(bounds)
    _check_input(corruption, x)
    unit = (x - low) / (high - low)
    out = corruption.apply(unit, corruption.parameter(level, x), generator).clamp(0.0, 1.0)
    return (out * (high - low) + low).clamp(low, high).to(dtype=x.dtype, device=x.device)


def corrupt_batch(
    x: torch.Tensor,
    name: str,
    level: int,
    *,
    seed: int,
    index: torch.Tensor,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """``corrupt`` each sample with a generator seeded from ``(seed, index[i])``.

    Every sample is corrupted on its own, so the result for a data set sample depends only on the seed,
    the sample and its index, never on which other samples share its batch (sharding and resuming give
    bit-identical inputs).
    """
    corruption = _lookup(name)
    _checked_level(level)
    _check_input(corruption, x)
    if index.ndim != 1 or len(index) != len(x):
        raise DataError(
            f"index must hold one data set position per sample ({len(x)}); found shape {tuple(index.shape)}"
        )
    out = torch.empty_like(x)
    for row, sample_index in enumerate(index.tolist()):
        generator = torch.Generator().manual_seed(sample_seed(seed, sample_index))
        out[row : row + 1] = corrupt(x[row : row + 1], name, level, generator=generator, bounds=bounds)
    return out


def sample_seed(seed: int, index: int) -> int:
    """A 64-bit seed for one sample, a stable hash of ``(seed, index)`` (independent of numpy/torch versions)."""
    return generators.sample_seed(seed, index, stream="corruption")


def _lookup(name: str) -> Corruption:
    try:
        return CORRUPTIONS[name]
    except KeyError:
        raise CorruptionSpecError(
            f"unknown corruption {name!r}; expected one of {sorted(CORRUPTIONS)}"
        ) from None


def _checked_level(level: int) -> int:
    if isinstance(level, bool) or not isinstance(level, int | np.integer) or int(level) not in LEVELS:
        raise CorruptionSpecError(f"corruption level must be an integer from 1 to 5; found {level!r}")
    return int(level)


def _checked_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(b) for b in bounds)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise CorruptionSpecError(f"bounds must be two finite numbers low < high; found {tuple(bounds)}")
    return low, high


def _check_input(corruption: Corruption, x: torch.Tensor) -> None:
    if not x.is_floating_point():
        raise DataError(f"corruptions need a float tensor; found dtype {x.dtype}")
    if x.ndim == 2 and corruption.images_only:
        noises = sorted(name for name, c in CORRUPTIONS.items() if not c.images_only)
        raise DataError(
            f"corruption {corruption.name!r} needs images [N, C, H, W]; the data are features [N, F] "
            f"(only {noises} apply to features)"
        )
    if x.ndim not in (2, 4):
        raise DataError(
            f"corruptions need images [N, C, H, W] or features [N, F]; found shape {tuple(x.shape)}"
        )


# --- noise (elementwise, so they also apply to features) ---


def _normal(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=generator.device).to(x)


def _uniform(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(x.shape, generator=generator, device=generator.device).to(x)


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Additive Gaussian noise with standard deviation ``std``."""
    return x + std * _normal(x, generator)


def shot_noise(x: torch.Tensor, photons: float, generator: torch.Generator) -> torch.Tensor:
    """Poisson (photon counting) noise: fewer ``photons`` per unit of intensity is noisier."""
    rate = (x.clamp(0.0, 1.0) * photons).to(device=generator.device, dtype=torch.float64)
    return (torch.poisson(rate, generator=generator) / photons).to(x)


def impulse_noise(x: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """Salt and pepper: a fraction ``amount`` of the values set to 0 or 1 with equal odds (skimage 's&p')."""
    flipped = _uniform(x, generator) < amount
    salt = _uniform(x, generator) < 0.5
    return torch.where(flipped, salt.to(x.dtype), x)


def speckle_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Multiplicative Gaussian noise: ``x + x * N(0, std)``."""
    return x + x * std * _normal(x, generator)


# --- blur and resampling ---


def _pad(x: torch.Tensor, radius_h: int, radius_w: int, mode: str) -> torch.Tensor:
    """Reflect where the image is large enough (OpenCV's default border), else replicate."""
    if mode == "reflect" and (radius_h >= x.shape[-2] or radius_w >= x.shape[-1]):
        mode = "replicate"
    return F.pad(x, (radius_w, radius_w, radius_h, radius_h), mode=mode)


def _filter(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate every channel with the same 2-D ``kernel`` (odd sides; callers never mutate it, it may be cached)."""
    channels = x.shape[1]
    weight = kernel.to(x).expand(channels, 1, *kernel.shape)
    padded = _pad(x, kernel.shape[0] // 2, kernel.shape[1] // 2, mode)
    return F.conv2d(padded, weight, groups=channels)


def _gaussian_1d(sigma: float, radius: int) -> torch.Tensor:
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


def gaussian_blur(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur as skimage's ``gaussian`` (truncated at 4 sigma, border replicated), done separably."""
    del generator
    line = _gaussian_1d(sigma, max(1, int(4 * sigma + 0.5)))  # scipy's radius for truncate=4
    return _filter(_filter(x, line[:, None], "replicate"), line[None, :], "replicate")


@functools.lru_cache(maxsize=32)
def _disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """A normalised disk of ``radius`` pixels, anti-aliased by a small Gaussian (ImageNet-C's ``disk``)."""
    half = 8 if radius <= 8 else math.ceil(radius)
    offsets = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius**2).double()
    disk /= disk.sum()
    smooth = _gaussian_1d(alias_blur, 1 if radius <= 8 else 2)
    kernel = F.conv2d(
        F.pad(disk[None, None], (len(smooth) // 2,) * 4, mode="reflect"),
        torch.outer(smooth, smooth)[None, None],
    )[0, 0]
    support = (kernel > 1e-12).nonzero()  # trim the empty margin so small images keep reflect padding
    top, left = support.min(0).values.tolist()
    bottom, right = support.max(0).values.tolist()
    reach = max(half - top, bottom - half, half - left, right - half)
    return kernel[half - reach : half + reach + 1, half - reach : half + reach + 1]


def defocus_blur(
    x: torch.Tensor, parameters: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """Out-of-focus blur: convolution with an anti-aliased disk of the given radius."""
    del generator
    radius, alias_blur = parameters
    return _filter(x, _disk_kernel(radius, alias_blur), "reflect")


def _box_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """Pillow's ``Image.BOX`` weights: each output pixel averages the input pixels whose centres its box covers.

    The box spans one output pixel (at least one input pixel when upsampling, which makes that nearest).
    """
    scale = size_in / size_out
    half = 0.5 * max(scale, 1.0)
    centres_out = (torch.arange(size_out, dtype=torch.float64)[:, None] + 0.5) * scale
    centres_in = torch.arange(size_in, dtype=torch.float64)[None, :] + 0.5
    offset = centres_in - centres_out
    inside = ((offset >= -half) & (offset < half)).double()
    return inside / inside.sum(dim=1, keepdim=True)


def _box_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    rows = _box_matrix(x.shape[-2], height).to(x)
    cols = _box_matrix(x.shape[-1], width).to(x)
    return rows @ x @ cols.T


def pixelate(x: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    """Box-downsample to ``factor`` of the size, then box-upsample back (Pillow's ``Image.BOX`` both ways)."""
    del generator
    height, width = x.shape[-2:]
    small = _box_resize(x, max(1, int(height * factor)), max(1, int(width * factor)))
    return _box_resize(small, height, width)


# --- photometric ---


def _check_colour(name: str, x: torch.Tensor) -> None:
    if x.shape[1] not in (1, 3):
        raise DataError(f"{name} needs 1 (grey) or 3 (RGB) channels; found {x.shape[1]}")


def brightness(x: torch.Tensor, shift: float, generator: torch.Generator) -> torch.Tensor:
    """Raise the HSV value (the largest channel) by ``shift`` keeping hue and saturation."""
    del generator
    _check_colour("brightness", x)
    value = x.amax(dim=1, keepdim=True)
    new_value = (value + shift).clamp(0.0, 1.0)
    ratio = torch.where(value > 0, new_value / value.clamp_min(1e-12), torch.zeros_like(value))
    return new_value - (value - x) * ratio  # x = V(1 - S f(H)): scaling V' / V keeps S and H


def contrast(x: torch.Tensor, factor: float, generator: torch.Generator) -> torch.Tensor:
    """Pull each image towards its own mean by ``factor`` (smaller is flatter)."""
    del generator
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * factor + mean


def jpeg(x: torch.Tensor, quality: int, generator: torch.Generator) -> torch.Tensor:
    """Round-trip each image through Pillow's JPEG encoder at ``quality`` (1 or 3 channels)."""
    del generator
    _check_colour("jpeg", x)
    pixels = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = [_jpeg_round_trip(image, quality) for image in pixels]
    out = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype)
    return out / 255.0


def _jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
        buffer, format="JPEG", quality=quality
    )
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        array = np.asarray(decoded, dtype=np.float32)
    return array[..., None] if array.ndim == 2 else array


def _corruption(
    apply: Apply, imagenet: tuple[Any, ...], cifar: tuple[Any, ...], *, random: bool
) -> Corruption:
    name = apply.__name__
    images_only = "features" not in CORRUPTION_INPUTS[name]  # the policy validator reads the same table
    return Corruption(name, apply, imagenet, cifar, images_only=images_only, random=random)


CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        _corruption(
            gaussian_noise,
            (0.08, 0.12, 0.18, 0.26, 0.38),
            (0.04, 0.06, 0.08, 0.09, 0.10),
            random=True,
        ),
        _corruption(shot_noise, (60, 25, 12, 5, 3), (500, 250, 100, 75, 50), random=True),
        _corruption(
            impulse_noise,
            (0.03, 0.06, 0.09, 0.17, 0.27),
            (0.01, 0.02, 0.03, 0.05, 0.07),
            random=True,
        ),
        _corruption(
            speckle_noise,
            (0.15, 0.2, 0.35, 0.45, 0.6),
            (0.06, 0.1, 0.12, 0.16, 0.2),
            random=True,
        ),
        _corruption(gaussian_blur, (1, 2, 3, 4, 6), (0.4, 0.6, 0.7, 0.8, 1.0), random=False),
        _corruption(
            defocus_blur,
            ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
            ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
            random=False,
        ),
        _corruption(brightness, (0.1, 0.2, 0.3, 0.4, 0.5), (0.05, 0.1, 0.15, 0.2, 0.3), random=False),
        _corruption(contrast, (0.4, 0.3, 0.2, 0.1, 0.05), (0.75, 0.5, 0.4, 0.3, 0.15), random=False),
        _corruption(jpeg, (25, 18, 15, 10, 7), (80, 65, 58, 50, 40), random=False),
        _corruption(
            pixelate,
            (0.6, 0.5, 0.4, 0.3, 0.25),
            (0.95, 0.9, 0.85, 0.75, 0.65),
            random=False,
        ),
    )
}
