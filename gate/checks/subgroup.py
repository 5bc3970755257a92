"""Check kind ``subgroup``: the accuracy of the worst subgroup, where a weak group hides in the mean.

Santurkar, Tsipras & Madry 2020 (BREEDS) split classes into subpopulations and show that a model can be
accurate overall and fail one of them. Groups are the data's ``group`` array (``by: group``: an ``.npz``
member, or the sub-folders of an image folder's class folders) or the classes (``by: class``). The metric is
``worst_group_accuracy`` or ``group_gap`` (best minus worst); the worst group is chosen on the data, so
its interval is Bonferroni-corrected over the judged groups (gate/metrics/subgroup.py).

The worst group is not a mean over samples, so a sharded run measures it once, in shard 1, on the whole
selection (as ``gradient_masking`` does), and ``gate merge`` takes shard 1's result.
"""

from __future__ import annotations

import numpy as np

from gate.checks.base import CheckContext, CheckKind, deferred_to_first_shard
from gate.data import EvalData
from gate.errors import CheckError, DataError
from gate.measurement import Measurement
from gate.metrics.subgroup import GroupAccuracy, SubgroupAccuracy, subgroup_accuracy
from gate.policy.specs import SubgroupSpec
from gate.stats import Interval


def require_groups(spec: SubgroupSpec, data: EvalData) -> None:
    """``by: group`` needs groups in the data: refused naming the data file (callable before any check runs)."""
    if spec.by == "group" and not data.has_group:
        raise DataError(
            f"check {spec.id!r} (kind subgroup, by: group) needs subgroup labels and the data has none: add "
            "a 'group' array of int ids [N] (and optionally 'group_names') to the .npz, nest the image "
            "folder as class/subgroup/*.png, or use by: class",
            path=data.source,
        )


class SubgroupCheck(CheckKind[SubgroupSpec]):
    """Per-group accuracy with exact intervals; judged on the worst group or the best-worst gap."""

    spec_type = SubgroupSpec

    def run(self, spec: SubgroupSpec, context: CheckContext) -> Measurement:
        require_groups(spec, context.data)
        whole = _whole_selection(context)
        if whole is None:
            return deferred_to_first_shard(context)
        index, labels, predictions = whole.clean_predictions()
        correct = whole.task.correct(predictions, labels).cpu().numpy()
        ids, names = _groups(spec, whole, index.cpu().numpy(), labels.cpu().numpy())
        try:
            result = subgroup_accuracy(
                ids, correct, names=names, confidence=context.policy.confidence,
                correction=spec.correction, min_group_size=spec.min_group_size,
            )  # fmt: skip
        except ValueError as exc:
            raise CheckError(f"{spec.id}: {exc}") from None
        if spec.metric == "worst_group_accuracy":
            value, interval = result.worst.accuracy, result.worst_interval
        else:
            value, interval = result.gap, result.gap_interval
        from gate.report.group_chart import write_group_accuracy_png

        chart = write_group_accuracy_png(
            context.artifact_path(spec.id, "group_accuracy.png"), result.groups, result.worst.name
        )
        return Measurement(
            value=value,
            n=len(correct),
            interval=interval,
            details=_details(spec, result),
            artifacts=[chart],
            message=_message(spec, result),
        )


def _whole_selection(context: CheckContext) -> CheckContext | None:
    """The context of the whole (unsharded) selection; None in shards 2..N, which defer to shard 1."""
    if context.shard is None:
        return context  # shares the run's clean predictions
    selection = context.full_selection if context.full_selection is not None else context.data.selected
    return context.diagnostic_context(len(selection))


def _groups(
    spec: SubgroupSpec, context: CheckContext, index: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Each sample's group id, and a name per id: the data's groups, or the classes."""
    if spec.by == "group":
        assert context.data.group_names is not None  # require_groups ran
        return context.data.groups(index), context.data.group_names
    known = context.model.class_names
    count = max(int(labels.max()) + 1, len(known) if known else 0)
    names = tuple(known[c] if known and c < len(known) else str(c) for c in range(count))
    return labels, names


def _details(spec: SubgroupSpec, result: SubgroupAccuracy) -> dict[str, object]:
    return {
        "by": spec.by,
        "correction": result.correction,
        "group_confidence": result.group_confidence,
        "min_group_size": spec.min_group_size,
        "judged_groups": len(result.judged),
        "worst_group": result.worst.name,
        "worst_group_accuracy": result.worst.accuracy,
        "worst_group_interval": _bounds(result.worst_interval),
        "best_group": result.best.name,
        "best_group_accuracy": result.best.accuracy,
        "group_gap": result.gap,
        "group_gap_interval": _bounds(result.gap_interval),
        "groups": {group.name: _group(group) for group in result.groups},
    }


def _group(group: GroupAccuracy) -> dict[str, object]:
    return {
        "n": group.n,
        "correct": group.correct,
        "accuracy": group.accuracy,
        "interval": _bounds(group.interval),
        "judged": group.judged,
    }


def _bounds(interval: Interval | None) -> list[float] | None:
    return None if interval is None else [interval.lower, interval.upper]


def _message(spec: SubgroupSpec, result: SubgroupAccuracy) -> str:
    what = "group" if spec.by == "group" else "class"
    worst = result.worst
    text = f"worst {what}: {worst.name!r} {worst.accuracy:.2f}{_range(result.worst_interval)} of {worst.n}"
    if spec.metric == "group_gap":
        text += f"; best {what}: {result.best.name!r} {result.best.accuracy:.2f} of {result.best.n}"
        text += f"; gap {result.gap:.2f}{_range(result.gap_interval)}"
    judged = len(result.judged)
    text += f" ({judged} {what}{'es' if what == 'class' else 's'} judged"
    if result.group_confidence is not None and result.correction == "bonferroni" and judged > 1:
        text += f", each interval at {result.group_confidence:.4g} (Bonferroni) for the choice of the worst"
    unjudged = len(result.groups) - judged
    if unjudged:
        text += f"; {unjudged} under min_group_size {spec.min_group_size} not judged"
    return text + ")"


def _range(interval: Interval | None) -> str:
    return "" if interval is None else f" [{interval.lower:.2f}, {interval.upper:.2f}]"
