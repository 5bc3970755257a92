"""Evidence that backs a check's number: example pairs and curves saved as PNG for the reports, and
the changed features of tabular examples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from gate.figures import pyplot, save_png

if TYPE_CHECKING:
    from gate.attacks.feature_space import FeatureSpace

TILE = 96  # small inputs (8x8 digits) are upscaled so people can see them


def _to_image(x: torch.Tensor, bounds: tuple[float, float]) -> Image.Image:
    """One sample [C, H, W] (or [F] features, shown as a strip) as an upscaled RGB tile."""
    low, high = bounds
    array = ((x.detach().float().cpu().numpy() - low) / (high - low)).clip(0, 1)
    if array.ndim == 1:
        array = array[None, None, :]
    channels = array.shape[0]
    pixels = (array.transpose(1, 2, 0) * 255).round().astype(np.uint8)
    image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels[:, :, :3]).convert("RGB")
    scale = max(1, TILE // max(image.size))
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def save_example_pairs(
    path: Path,
    originals: torch.Tensor,
    changed: torch.Tensor,
    captions: Sequence[tuple[str, str]],
    bounds: tuple[float, float],
) -> Path:
    """A grid with one row per example: original | changed, each captioned (e.g. label → prediction)."""
    tiles = [(_to_image(a, bounds), _to_image(b, bounds)) for a, b in zip(originals, changed, strict=True)]
    width, height = tiles[0][0].size
    caption_height = 14
    sheet = Image.new("RGB", (2 * width + 12, len(tiles) * (height + caption_height + 6)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, ((left, right), (left_caption, right_caption)) in enumerate(zip(tiles, captions, strict=True)):
        top = row * (height + caption_height + 6)
        sheet.paste(left, (0, top))
        sheet.paste(right, (width + 12, top))
        draw.text((2, top + height + 1), left_caption, fill="black")
        draw.text((width + 14, top + height + 1), right_caption, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")
    return path


def save_curve(
    path: Path, xs: Sequence[float], ys: Sequence[float], *, x_label: str, y_label: str, title: str
) -> Path:
    """A small line plot (e.g. robust accuracy against epsilon), drawn with matplotlib's Agg backend."""
    plt = pyplot()

    figure, axes = plt.subplots(figsize=(4.5, 3.2), dpi=100)
    axes.plot(list(xs), list(ys), marker="o")
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.set_title(title)
    axes.set_ylim(-0.02, 1.02)
    axes.grid(alpha=0.3)
    return save_png(figure, path)


def caption(label: int, class_names: Sequence[str] | None) -> str:
    if class_names and 0 <= label < len(class_names):
        return class_names[label]
    return str(label)


MAX_LISTED_CHANGES = 8


def feature_examples(
    examples: list[tuple[torch.Tensor, torch.Tensor, int, int]], space: FeatureSpace
) -> list[dict[str, Any]]:
    """Changed examples of tabular data (clean, changed, label, prediction) as the features they change,
    largest standardised change first: the tabular counterpart of an image pair."""
    listed = []
    for clean, adversarial, label, prediction in examples:
        change = ((adversarial - clean).abs() / space.scale).tolist()
        order = sorted(range(len(change)), key=lambda i: -change[i])
        changes = {
            space.names[i]: [float(clean[i]), float(adversarial[i])]
            for i in order[:MAX_LISTED_CHANGES]
            if change[i] > 0
        }
        listed.append({"label": label, "prediction": prediction, "changes": changes})
    return listed
