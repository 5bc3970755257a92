"""Evidence that backs a check's number: example pairs and curves saved as PNG for the reports, and
the changed features of tabular examples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from gate.figures import pyplot, save_image, save_png, tile_grid

if TYPE_CHECKING:
    from gate.attacks.feature_space import FeatureSpace

TILE = 96
"""Least length in pixels of an image's longer side: small inputs (8x8 digits) are upscaled to it."""
PAIR_ROWS = ("original", "changed", "perturbation")


def _upscaled(image: Image.Image) -> Image.Image:
    scale = -(-TILE // max(image.size))
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def _pixels(array: np.ndarray) -> Image.Image:
    """``[C, H, W]`` (or ``[F]`` features, shown as a strip) in [0, 1] as an upscaled RGB tile."""
    if array.ndim == 1:
        array = array[None, None, :]
    pixels = (array.clip(0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8)
    image = Image.fromarray(pixels[:, :, 0] if array.shape[0] == 1 else pixels[:, :, :3]).convert("RGB")
    return _upscaled(image)


def to_tile(x: torch.Tensor, bounds: tuple[float, float]) -> Image.Image:
    """One sample [C, H, W] (or [F] features, shown as a strip) as an RGB tile, upscaled to :data:`TILE`."""
    low, high = bounds
    return _pixels((x.detach().float().cpu().numpy() - low) / (high - low))


def perturbation_image(delta: torch.Tensor) -> tuple[Image.Image, float]:
    """``delta`` (x_changed - x) as a tile stretched over the full colour range, mid-grey at 0, and the
    largest magnitude that the extremes stand for (per channel for colour images)."""
    array = delta.detach().float().cpu().numpy()
    scale = float(np.abs(array).max())
    return _pixels(0.5 + 0.5 * array / scale if scale > 0 else np.full_like(array, 0.5)), scale


def save_example_pairs(
    path: Path,
    originals: torch.Tensor,
    changed: torch.Tensor,
    captions: Sequence[str | tuple[str, str]],
    bounds: tuple[float, float],
    *,
    row_titles: Sequence[str] = PAIR_ROWS,
) -> Path:
    """One column per example: original, changed and the perturbation (changed - original, stretched to
    the full colour range with mid-grey at 0, its largest magnitude written under it), the example's
    caption above (e.g. "label / prediction (confidence)"; a pair of strings is joined with " / ").

    Tiles are upscaled nearest-neighbour to at least :data:`TILE` pixels and the text is at a reading size
    (:data:`gate.figures.FONT_PX`); the captions are also the PNG's ``Description``, one per line.
    """
    titles = [text if isinstance(text, str) else " / ".join(text) for text in captions]
    if len(titles) != len(originals):
        raise ValueError(f"{len(originals)} examples but {len(titles)} captions")
    perturbations = [
        perturbation_image(b.float() - a.float()) for a, b in zip(originals, changed, strict=True)
    ]
    tiles = [
        [to_tile(x, bounds) for x in originals],
        [to_tile(x, bounds) for x in changed],
        [image for image, _ in perturbations],
    ]
    under = [[""] * len(titles), [""] * len(titles), [f"±{scale:.2g}" for _, scale in perturbations]]
    sheet = tile_grid(tiles, captions=under, column_titles=titles, row_titles=row_titles)
    return save_image(sheet, path, text={"Title": " | ".join(row_titles), "Description": "\n".join(titles)})


def predicted_confidence(
    scores: torch.Tensor, predictions: torch.Tensor, *, are_probabilities: bool
) -> torch.Tensor:
    """The probability of each predicted class ``[N]``: the scores themselves where they are
    probabilities, else their softmax."""
    probabilities = scores.float() if are_probabilities else torch.softmax(scores.float(), dim=-1)
    return probabilities.gather(1, predictions.long().to(scores.device)[:, None])[:, 0]


def pair_caption(label: int, prediction: int, confidence: float, class_names: Sequence[str] | None) -> str:
    """``"label / prediction (confidence)"``, e.g. ``"7 / 1 (0.93)"``."""
    return f"{caption(label, class_names)} / {caption(prediction, class_names)} ({confidence:.2f})"


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
    return save_png(figure, path, text={"Title": title})


def save_epsilon_curve(
    path: Path,
    epsilons: Sequence[float],
    robust_accuracy: Sequence[float],
    *,
    policy_epsilon: float,
    threshold: float | None,
    title: str,
) -> Path:
    """Robust accuracy against ε, with the policy's ε as a vertical line and the threshold as a horizontal
    one. ε = 0 (the clean accuracy) belongs among ``epsilons``; the points are drawn in order of ε.

    The legend's entries (and the points) are also the PNG's ``Description``.
    """
    if len(epsilons) != len(robust_accuracy) or not epsilons:
        raise ValueError(f"{len(epsilons)} epsilons but {len(robust_accuracy)} accuracies")
    points = sorted(zip((float(e) for e in epsilons), (float(a) for a in robust_accuracy), strict=True))
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(5.0, 3.4), dpi=100)
    axes.plot([e for e, _ in points], [a for _, a in points], marker="o", label="robust accuracy")
    legend = ["robust accuracy", f"policy ε = {policy_epsilon:.4g}"]
    axes.axvline(policy_epsilon, color="tab:red", linestyle="--", label=legend[1])
    if threshold is not None:
        legend.append(f"threshold = {threshold:.4g}")
        axes.axhline(threshold, color="tab:gray", linestyle=":", label=legend[2])
    if points[0][0] == 0.0:
        axes.annotate("clean", points[0], textcoords="offset points", xytext=(4, 4))
    axes.set_xlabel("ε")
    axes.set_ylabel("robust accuracy")
    axes.set_title(title)
    axes.set_xlim(left=0.0)
    axes.set_ylim(-0.02, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    described = "; ".join([*legend, *(f"ε={e:.4g}: {a:.4g}" for e, a in points)])
    return save_png(figure, path, text={"Title": title, "Description": described})


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
