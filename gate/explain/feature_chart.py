"""Feature-importance evidence for tabular models: the ranking of features and its bar chart (PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from gate.errors import CheckError
from gate.figures import pyplot, save_png


def feature_labels(count: int, names: Sequence[str] | None) -> list[str]:
    """The data's feature names, or ``f0 .. f{count-1}`` when it has none."""
    if names is None:
        return [f"f{position}" for position in range(count)]
    if len(names) != count:
        raise CheckError(f"the data names {len(names)} features but its samples have {count}")
    return [str(name) for name in names]


def top_features(
    attribution: torch.Tensor, names: Sequence[str] | None = None, top: int = 20
) -> list[tuple[str, float]]:
    """The ``top`` features by mean absolute attribution over the samples, largest first.

    Args:
        attribution: Attributions of feature vectors ``[N, F]``.
        names: One name per feature; default ``f0 .. f{F-1}``.
        top: Most features listed.

    Returns:
        ``(name, mean |attribution|)`` pairs; ties keep column order.
    """
    if attribution.dim() != 2 or len(attribution) == 0:
        raise CheckError(
            f"feature importances need attributions [N, F], N >= 1; got {tuple(attribution.shape)}"
        )
    importance = attribution.detach().double().abs().mean(dim=0).cpu()
    labels = feature_labels(importance.numel(), names)
    order = importance.argsort(descending=True, stable=True)[:top]
    return [(labels[position], float(importance[position])) for position in order.tolist()]


def save_feature_importance(path: str | Path, ranking: Sequence[tuple[str, float]], *, title: str) -> Path:
    """Write a horizontal bar chart of ``ranking`` (as :func:`top_features` returns it), first on top.

    Drawn with matplotlib's Agg backend (no display needed); missing folders are created.
    """
    plt = pyplot()

    names = [name for name, _ in ranking][::-1]
    values = [value for _, value in ranking][::-1]
    figure, axes = plt.subplots(figsize=(6.4, 1.4 + 0.28 * len(ranking)), dpi=100)
    axes.barh(range(len(values)), values, color="#c0392b")
    axes.set_yticks(range(len(names)), names, fontsize=8)
    axes.set_xlabel("mean |attribution|")
    axes.set_title(title, fontsize=9)
    axes.grid(axis="x", alpha=0.3)
    return save_png(figure, path)
