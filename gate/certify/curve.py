"""Certified accuracy against radius (Cohen et al. 2019, Figure 1): the curve and its picture."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from gate.figures import pyplot, save_png


def certified_accuracy_curve(
    radius: torch.Tensor, correct: torch.Tensor, radii_grid: Sequence[float] | torch.Tensor
) -> list[tuple[float, float]]:
    """For each ``r`` of ``radii_grid``, the fraction of samples that are correct **and** certified at ``r``.

    Args:
        radius: ``[N]`` certified radii (``0`` where the certificate abstains).
        correct: ``[N]`` bool, the certified prediction is the true label (false where it abstains).
        radii_grid: the radii to evaluate, in the order they are returned.

    Returns:
        ``[(r, certified accuracy at r), ...]``: non-increasing in ``r`` for an increasing grid.
    """
    radius = torch.as_tensor(radius, dtype=torch.float64).reshape(-1).cpu()
    correct = torch.as_tensor(correct, dtype=torch.bool).reshape(-1).cpu()
    if radius.numel() == 0 or radius.shape != correct.shape:
        raise ValueError(
            f"radius and correct must be non-empty and of one length, got {radius.numel()} and {correct.numel()}"
        )
    total = radius.numel()
    return [(float(r), int((correct & (radius >= float(r))).sum()) / total) for r in radii_grid]


def radii_grid(radius: torch.Tensor, policy_radius: float, points: int = 41) -> list[float]:
    """``points`` evenly spaced radii from 0 to a little past the largest certified or policy radius."""
    largest = max(float(torch.as_tensor(radius, dtype=torch.float64).max()), float(policy_radius), 1e-6)
    top = 1.05 * largest
    return [top * i / (points - 1) for i in range(points)]


def write_curve_png(
    path: str | Path,
    curve: Sequence[tuple[float, float]],
    policy_radius: float,
    *,
    title: str = "certified accuracy (randomized smoothing)",
) -> Path:
    """Draw ``curve`` (as :func:`certified_accuracy_curve` returns it) as a line with the policy's
    radius marked by a dashed line; missing folders are created.

    Drawn with matplotlib's Agg backend (no display needed), as the other report pictures are.
    """
    plt = pyplot()

    radii = [r for r, _ in curve]
    accuracy = [a for _, a in curve]
    figure, axes = plt.subplots(figsize=(4.5, 3.2), dpi=100)
    axes.plot(radii, accuracy, color="#1f77b4")
    axes.axvline(policy_radius, color="#c0392b", linestyle="--", label=f"policy radius {policy_radius:g}")
    axes.set_xlabel("L2 radius (input range)")
    axes.set_ylabel("certified accuracy")
    axes.set_title(title, fontsize=9)
    axes.set_ylim(-0.02, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper right")
    return save_png(figure, path)


__all__ = ["certified_accuracy_curve", "radii_grid", "write_curve_png"]
