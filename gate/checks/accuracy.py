"""Check kind ``accuracy``: top-1 accuracy of the deployed model on the evaluation data."""

from __future__ import annotations

import torch

from gate.checks.base import CheckContext, CheckKind
from gate.measurement import Measurement
from gate.policy.specs import AccuracySpec


class AccuracyCheck(CheckKind[AccuracySpec]):
    """Clean accuracy as ONNX Runtime computes it, with per-class accuracies for the report."""

    spec_type = AccuracySpec

    def run(self, spec: AccuracySpec, context: CheckContext) -> Measurement:
        _, labels, predictions = context.clean_predictions()
        correct = context.task.correct(predictions, labels)
        return Measurement.proportion(
            correct, details={"per_class_accuracy": per_class_accuracy(labels, correct)}
        )


def per_class_accuracy(labels: torch.Tensor, correct: torch.Tensor) -> dict[str, float]:
    """Accuracy of each class present in the data, keyed by label; a weak class hides in the mean."""
    result: dict[str, float] = {}
    for label in torch.unique(labels).tolist():
        members = labels == label
        result[str(label)] = float(correct[members].float().mean())
    return result
