"""Accuracy per subgroup, and of the worst group, with intervals that allow for choosing the worst on the data.

The worst group is picked after looking at the data, so the interval of the group that happens to look
worst says little about the worst group's true accuracy: with many groups one looks bad by chance (its upper
bound is too low), and a small group whose true accuracy is low may look fine while a large group is picked
(the large group's lower bound is then too high). gate therefore gives every judged group a Clopper–Pearson
interval at ``1 - (1 - c) / G`` (Bonferroni over the ``G`` judged groups), so that with probability at least
``c`` all ``G`` intervals hold at once. Whatever group is truly worst, its accuracy then lies in
``[min_g lower_g, min_g upper_g]`` and the gap between the best and the worst group in
``[max(0, max_g lower_g - min_g upper_g), max_g upper_g - min_g lower_g]``.
Santurkar, Tsipras & Madry 2020 (BREEDS) measure subpopulation shift on such groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from gate.stats import Interval, clopper_pearson

Correction = Literal["bonferroni", "none"]


@dataclass(frozen=True)
class GroupAccuracy:
    """One group: its size, how many it got right, and its own (uncorrected) interval."""

    name: str
    n: int
    correct: int
    interval: Interval | None
    judged: bool
    """False for groups under ``min_group_size``: reported, never the worst or the best."""

    @property
    def accuracy(self) -> float:
        return self.correct / self.n


@dataclass(frozen=True)
class SubgroupAccuracy:
    """The groups of one evaluation, the worst and best judged group, and the simultaneous intervals."""

    groups: tuple[GroupAccuracy, ...]
    worst: GroupAccuracy
    best: GroupAccuracy
    worst_interval: Interval | None
    gap_interval: Interval | None
    correction: Correction
    group_confidence: float | None
    """The confidence of each group's interval behind ``worst_interval`` and ``gap_interval``."""

    @property
    def judged(self) -> tuple[GroupAccuracy, ...]:
        return tuple(group for group in self.groups if group.judged)

    @property
    def gap(self) -> float:
        return self.best.accuracy - self.worst.accuracy


def corrected_confidence(confidence: float, groups: int, correction: Correction) -> float:
    """Each group's confidence so that all ``groups`` intervals hold together with probability ``confidence``."""
    if groups < 1:
        raise ValueError(f"a correction needs at least one group, got {groups}")
    if correction == "none":
        return confidence
    return 1.0 - (1.0 - confidence) / groups


def subgroup_accuracy(
    group_ids: np.ndarray,
    correct: np.ndarray,
    *,
    names: Sequence[str],
    confidence: float | None,
    correction: Correction = "bonferroni",
    min_group_size: int = 1,
) -> SubgroupAccuracy:
    """Accuracy of every group present in ``group_ids``, and the worst and best of those judged.

    Args:
        group_ids: ``[N]`` non-negative group ids, one per sample.
        correct: ``[N]`` booleans, whether the model got the sample right.
        names: the name of each group id (``names[g]`` names group ``g``).
        confidence: the policy's confidence; None gives no intervals (point values are judged).
        correction: ``bonferroni`` widens the worst and gap intervals for the choice of the worst group
            (see the module docstring); ``none`` uses each group's own interval at ``confidence``.
        min_group_size: groups with fewer samples are reported but not judged.

    Returns:
        The per-group accuracies (groups in id order) and the corrected worst-group and gap intervals.

    Raises:
        ValueError: the arrays disagree in length, or no group has ``min_group_size`` samples.
    """
    ids = np.asarray(group_ids, dtype=np.int64).ravel()
    hits = np.asarray(correct, dtype=bool).ravel()
    if ids.shape != hits.shape:
        raise ValueError(
            f"group_ids and correct must have one value per sample; got {ids.size} and {hits.size}"
        )
    if ids.size == 0:
        raise ValueError("no samples: a group accuracy needs at least one")
    present = np.unique(ids)
    sizes = np.bincount(ids)
    right = np.bincount(ids, weights=hits.astype(np.float64)).round().astype(np.int64)
    groups = tuple(
        GroupAccuracy(
            name=names[g],
            n=int(sizes[g]),
            correct=int(right[g]),
            interval=_interval(int(right[g]), int(sizes[g]), confidence),
            judged=bool(sizes[g] >= min_group_size),
        )
        for g in present.tolist()
    )
    judged = [group for group in groups if group.judged]
    if not judged:
        raise ValueError(
            f"no group has at least min_group_size = {min_group_size} samples; the largest has {int(sizes.max())}"
        )
    worst = min(judged, key=lambda group: (group.accuracy, -group.n))
    best = max(judged, key=lambda group: (group.accuracy, group.n))
    if confidence is None:
        return SubgroupAccuracy(groups, worst, best, None, None, correction, None)
    level = corrected_confidence(confidence, len(judged), correction)
    simultaneous = [clopper_pearson(group.correct, group.n, level) for group in judged]
    lowers = np.array([interval.lower for interval in simultaneous])
    uppers = np.array([interval.upper for interval in simultaneous])
    method = f"clopper-pearson, {correction} over {len(judged)} groups"
    worst_interval = Interval(float(lowers.min()), float(uppers.min()), confidence, method)
    gap_interval = Interval(
        max(0.0, float(lowers.max() - uppers.min())), float(uppers.max() - lowers.min()), confidence, method
    )
    return SubgroupAccuracy(groups, worst, best, worst_interval, gap_interval, correction, level)


def _interval(correct: int, n: int, confidence: float | None) -> Interval | None:
    return None if confidence is None else clopper_pearson(correct, n, confidence)
