"""The deletion or insertion curve as a picture: the mean target probability against the fraction of
pixels (features) switched, with the spread between samples and the area in the legend."""

from __future__ import annotations

from pathlib import Path

import torch

from gate.explain.metrics.perturbation_curves import curve_area
from gate.figures import pyplot, save_png

VERBS = {"deletion": "removed", "insertion": "inserted"}


def save_probability_curve(
    path: str | Path, fractions: torch.Tensor, probabilities: torch.Tensor, *, kind: str, title: str
) -> Path:
    """Write the mean of the curves ``probabilities [N, S]`` over ``fractions [S]`` as a PNG, the band
    between the samples' 25th and 75th percentiles shaded, and the area under the mean curve (the mean of
    the samples' areas: the trapezoid rule is linear) in the legend and in the PNG's ``Description``.

    Args:
        path: File to write; missing folders are created.
        fractions: Share of units switched at each step, from 0 to 1.
        probabilities: Target probability per sample and step.
        kind: ``"deletion"`` or ``"insertion"`` (what the x axis counts).
        title: Title of the plot.
    """
    curves = probabilities.double().cpu()
    xs = fractions.double().cpu()
    mean = curves.mean(dim=0)
    area = float(curve_area(xs, mean[None])[0])
    label = f"mean of {len(curves)} samples, AUC = {area:.3f}"
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(5.0, 3.4), dpi=100)
    low, high = curves.quantile(0.25, dim=0), curves.quantile(0.75, dim=0)
    axes.fill_between(xs.numpy(), low.numpy(), high.numpy(), alpha=0.25, label="25th-75th percentile")
    axes.plot(xs.numpy(), mean.numpy(), label=label)
    axes.set_xlabel(f"fraction {VERBS.get(kind, 'switched')}")
    axes.set_ylabel("target probability")
    axes.set_title(title)
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(-0.02, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    return save_png(figure, path, text={"Title": title, "Description": f"{kind} curve: {label}"})
