"""The reliability diagram of the ``calibration`` check (Guo et al. 2017, Figure 1) as a PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gate.figures import pyplot, save_png
from gate.metrics.calibration import ReliabilityBin


def write_reliability_png(
    path: str | Path, table: Sequence[ReliabilityBin], ece: float, *, title: str = "reliability"
) -> Path:
    """Draw each equal-mass bin's accuracy as a bar at its mean confidence, against the diagonal of
    perfect calibration, with the gap between accuracy and confidence shaded; ECE goes in the title.

    Equal-mass bins of a confident model crowd near 1, so the bars are of one width (0.8 / bins), drawn
    half transparent with a marker at each bin's (confidence, accuracy): bins that overlap stay readable.
    Drawn with matplotlib's Agg backend (no display needed), as the other report pictures are; missing
    folders are created.
    """
    plt = pyplot()

    figure, axes = plt.subplots(figsize=(4.5, 4.0), dpi=100)
    axes.plot([0, 1], [0, 1], color="#555555", linestyle="--", linewidth=1, label="perfect calibration")
    width = 0.8 / max(len(table), 1)
    lefts = [min(max(row.confidence - width / 2, 0.0), 1.0 - width) for row in table]
    for number, (left, row) in enumerate(zip(lefts, table, strict=True)):
        axes.bar(left, row.accuracy, width=width, align="edge", color="#1f77b4", alpha=0.5,
                 edgecolor="white", label="accuracy" if number == 0 else None)  # fmt: skip
    # The gaps go over every bar, so the largest gap among overlapping bins is never hidden.
    for number, (left, row) in enumerate(zip(lefts, table, strict=True)):
        low, high = sorted((row.accuracy, row.confidence))
        axes.bar(left, high - low, bottom=low, width=width, align="edge", color="#c0392b", alpha=0.3,
                 zorder=3, label="gap to confidence" if number == 0 else None)  # fmt: skip
    axes.plot([row.confidence for row in table], [row.accuracy for row in table], "o", color="#1f4e79",
              markersize=3, zorder=4)  # fmt: skip
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel(f"confidence ({len(table)} equal-mass bins)")
    axes.set_ylabel("accuracy")
    axes.set_title(f"{title}: ECE = {ece:.4f}", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")
    return save_png(figure, path)


__all__ = ["write_reliability_png"]
