"""The ``subgroup`` check's picture: every group's accuracy with its interval, the worst group marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gate.figures import pyplot, save_png
from gate.metrics.subgroup import GroupAccuracy

MOST_GROUPS_SHOWN = 40


def write_group_accuracy_png(
    path: str | Path, groups: Sequence[GroupAccuracy], worst: str, *, title: str = "accuracy per group"
) -> Path:
    """One horizontal bar per group (its accuracy, with its own Clopper–Pearson interval as an error bar),
    weakest first; the worst judged group in red, groups too small to judge in grey. Above
    ``MOST_GROUPS_SHOWN`` groups only the weakest are drawn (the title says how many). matplotlib's Agg
    backend, as the other report pictures."""
    plt = pyplot()

    ordered = sorted(groups, key=lambda group: (group.accuracy, group.name))
    shown = ordered[:MOST_GROUPS_SHOWN]
    height = 1.2 + 0.28 * len(shown)
    figure, axes = plt.subplots(figsize=(5.5, height), dpi=100)
    positions = list(range(len(shown)))[::-1]
    colours = [
        "#c0392b" if group.name == worst else ("#1f77b4" if group.judged else "#aaaaaa") for group in shown
    ]
    axes.barh(positions, [group.accuracy for group in shown], color=colours, alpha=0.8)
    for position, group in zip(positions, shown, strict=True):
        if group.interval is not None:
            axes.plot([group.interval.lower, group.interval.upper], [position, position], color="#222222",
                      linewidth=1)  # fmt: skip
    axes.set_yticks(positions, [f"{group.name} (n={group.n})" for group in shown], fontsize=8)
    axes.set_xlim(0, 1)
    axes.set_xlabel("accuracy (line: the group's own interval)")
    more = f", the weakest {len(shown)} of {len(groups)}" if len(groups) > len(shown) else ""
    axes.set_title(f"{title}{more}; worst judged: {worst}", fontsize=9)
    axes.grid(axis="x", alpha=0.3)
    return save_png(figure, path)


__all__ = ["write_group_accuracy_png"]
