"""Heatmap pictures: the input in grey with the attribution overlaid in colour, the mask outlined, and a
colour bar that says what the colours mean; and the randomisation test's two maps side by side."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from gate.figures import FONT_PX, font, save_image, tile_grid

_MASK_COLOUR = np.array([0, 200, 0], dtype=np.float64)
_POSITIVE = np.array([220, 30, 30], dtype=np.float64)  # red: evidence for the target
_NEGATIVE = np.array([30, 80, 230], dtype=np.float64)  # blue: evidence against
_BLEND = 0.8  # how much of a pixel the strongest relevance covers
BAR_PX = 10


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
    rgb = grey * (1 - _BLEND * strength) + colour * _BLEND * strength
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
    is at least ``size`` pixels, so 8x8 digits are readable. Beneath it a colour bar runs from the most
    negative relevance of the picture (blue, labelled with its value) through 0 (the input alone) to the
    most positive (red); a label, when given, is written under the bar.

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
        picture = _with_colour_bar(picture, float(np.abs(relevance[index]).max()))
        if labels is not None:
            picture = _with_caption(picture, str(labels[index]))
        path = prefix.with_name(f"{prefix.name}_{index:03d}.png")
        picture.save(path)
        paths.append(path)
    return paths


def colour_bar(width: int) -> np.ndarray:
    """RGB uint8 ``[BAR_PX, width, 3]``: relevance from -max (left) to +max (right), drawn as ``overlay``
    draws it over a mid-grey pixel."""
    position = np.linspace(-1.0, 1.0, width)
    strength = np.abs(position)[:, None]
    colour = np.where(position[:, None] >= 0, _POSITIVE, _NEGATIVE)
    row = 128.0 * (1 - _BLEND * strength) + colour * _BLEND * strength
    return np.repeat(row[None], BAR_PX, axis=0).clip(0, 255).astype(np.uint8)


def _with_colour_bar(picture: Image.Image, scale: float) -> Image.Image:
    face = font()
    canvas = Image.new("RGB", (picture.width, picture.height + 4 + BAR_PX + FONT_PX + 4), "white")
    canvas.paste(picture, (0, 0))
    canvas.paste(Image.fromarray(colour_bar(picture.width)), (0, picture.height + 4))
    draw = ImageDraw.Draw(canvas)
    top = picture.height + 4 + BAR_PX + 1
    low, high = (f"-{scale:.2g}", f"+{scale:.2g}") if scale > 0 else ("-", "+")
    draw.text((1, top), low, fill="black", font=face)
    draw.text((picture.width // 2, top), "0", fill="black", font=face, anchor="ma")
    draw.text((picture.width - 1, top), high, fill="black", font=face, anchor="ra")
    return canvas


def _with_caption(picture: Image.Image, text: str) -> Image.Image:
    canvas = Image.new("RGB", (picture.width, picture.height + FONT_PX + 8), "white")
    canvas.paste(picture, (0, 0))
    ImageDraw.Draw(canvas).text((2, picture.height + 3), text, fill="black", font=font())
    return canvas


def save_randomization_maps(
    path: str | Path,
    x: torch.Tensor,
    trained: torch.Tensor,
    randomized: torch.Tensor,
    similarity: torch.Tensor,
    *,
    layers: int,
    size: int = 128,
) -> Path:
    """One PNG of the maps the model-randomisation test compares, a row per sample: the input, the trained
    model's attribution and the attribution once ``layers`` layers are randomised, each map overlaid on
    the input and scaled by its own largest magnitude (the test compares ranks, not sizes), the rank
    correlation (Spearman's ρ) written under the pair. The captions are also the PNG's ``Description``.

    Args:
        path: File to write; missing folders are created.
        x: Inputs ``[N, C, H, W]``.
        trained: Attributions of the trained model, same shape as ``x``.
        randomized: Attributions of the randomised model, same shape as ``x``.
        similarity: Spearman rank correlation per sample ``[N]``.
        layers: How many layers were randomised (for the column title).
        size: Target length in pixels of each tile's longer side.
    """
    images = x.detach().float().cpu().numpy()
    factor = max(1, -(-size // max(images.shape[-2:])))
    maps = [m.detach().float().sum(dim=1).cpu().numpy() for m in (trained, randomized)]

    def tile(index: int, relevance: np.ndarray | None) -> Image.Image:
        up = np.kron(images[index], np.ones((1, factor, factor)))
        empty = np.zeros(up.shape[1:])
        shown = empty if relevance is None else np.kron(relevance[index], np.ones((factor, factor)))
        return Image.fromarray(overlay(up, shown, None))

    rows = [[tile(i, None), tile(i, maps[0]), tile(i, maps[1])] for i in range(len(images))]
    captions = [["", "", f"ρ = {float(rho):.2f}"] for rho in similarity]
    titles = ("input", "trained model", f"{layers} layers randomised")
    sheet = tile_grid(rows, captions=captions, column_titles=titles)
    described = "\n".join(row[2] for row in captions)
    return save_image(sheet, path, text={"Title": " | ".join(titles), "Description": described})
