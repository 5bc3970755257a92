"""Heatmap pictures: the input in grey with the attribution overlaid in colour and the mask outlined."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

_MASK_COLOUR = np.array([0, 200, 0], dtype=np.float64)
_POSITIVE = np.array([220, 30, 30], dtype=np.float64)  # red: evidence for the target
_NEGATIVE = np.array([30, 80, 230], dtype=np.float64)  # blue: evidence against


def _grey(image: np.ndarray) -> np.ndarray:
    """Channel mean of ``[C, H, W]`` stretched to [0, 1] per image."""
    grey = image.mean(axis=0)
    low, high = grey.min(), grey.max()
    return (grey - low) / (high - low) if high > low else np.zeros_like(grey)


def overlay(image: np.ndarray, relevance: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """RGB uint8 ``[H, W, 3]``: grey input, red (positive) / blue (negative) relevance, green mask outline.

    Relevance is scaled by its largest magnitude, so colour strength is comparable within one picture only.
    """
    grey = _grey(image)[..., None] * 255.0
    scale = np.abs(relevance).max()
    strength = (np.abs(relevance) / scale if scale > 0 else np.zeros_like(relevance))[..., None]
    colour = np.where(relevance[..., None] >= 0, _POSITIVE, _NEGATIVE)
    rgb = grey * (1 - 0.8 * strength) + colour * 0.8 * strength
    if mask is not None:
        rgb = np.where(_outline(mask)[..., None], _MASK_COLOUR, rgb)
    return rgb.clip(0, 255).astype(np.uint8)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (image borders count as outside)."""
    inside = mask.astype(bool)
    padded = np.pad(inside, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return inside & ~interior


def save_heatmaps(
    path_prefix: str | Path,
    x: torch.Tensor,
    attribution: torch.Tensor,
    mask: torch.Tensor | None = None,
    labels: Sequence[str] | None = None,
    max_items: int = 16,
    size: int = 128,
) -> list[Path]:
    """Write one PNG per sample: ``{path_prefix}_{index:03d}.png``.

    Each picture shows the input in grey, the channel-summed attribution overlaid (red for positive, blue
    for negative, stronger where larger), and the outline of ``mask`` in green. Images are upscaled with
    nearest-neighbour interpolation (before drawing the outline, so it stays thin) until the longer side
    is at least ``size`` pixels, so 8x8 digits are readable. A label, when given, is written beneath.

    Args:
        path_prefix: Folder and file-name stem; missing folders are created.
        x: Inputs ``[N, C, H, W]``.
        attribution: Same shape as ``x``.
        mask: Optional ``[N, H, W]`` region of the real evidence.
        labels: Optional caption per sample (e.g. ``"y=3 pred=8"``).
        max_items: Most pictures written (the first samples).
        size: Target length in pixels of the longer side.

    Returns:
        Paths of the written files, in sample order.
    """
    prefix = Path(path_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    images = x.detach().float().cpu().numpy()
    relevance = attribution.detach().float().sum(dim=1).cpu().numpy()
    masks = mask.detach().cpu().numpy() if mask is not None else None
    height, width = images.shape[-2:]
    factor = max(1, -(-size // max(height, width)))
    paths = []
    for index in range(min(len(images), max_items)):
        up = np.kron(images[index], np.ones((1, factor, factor)))
        up_relevance = np.kron(relevance[index], np.ones((factor, factor)))
        up_mask = np.kron(masks[index], np.ones((factor, factor))) if masks is not None else None
        picture = Image.fromarray(overlay(up, up_relevance, up_mask))
        if labels is not None:
            picture = _with_caption(picture, str(labels[index]))
        path = prefix.with_name(f"{prefix.name}_{index:03d}.png")
        picture.save(path)
        paths.append(path)
    return paths


def _with_caption(picture: Image.Image, text: str) -> Image.Image:
    canvas = Image.new("RGB", (picture.width, picture.height + 16), "white")
    canvas.paste(picture, (0, 0))
    ImageDraw.Draw(canvas).text((2, picture.height + 2), text, fill="black")
    return canvas
