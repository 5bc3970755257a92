"""Classification, on images or on tabular features: scores are logits ``[N, C]``, a target is a class
index, and a prediction is correct when the top-scoring class is the target.

The attacks (gate/attacks/) are classification attacks: they read "still correct" through
:func:`is_correct`, so the meaning of "correct" is written once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gate.tasks.base import Task

if TYPE_CHECKING:
    import torch


def predicted_classes(scores: torch.Tensor) -> torch.Tensor:
    """The class each row of logits (or probabilities) ``[N, C]`` picks: its largest score."""
    return scores.argmax(dim=1)


def is_correct(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample booleans: the top-scoring class is the label."""
    return predicted_classes(scores) == labels


@dataclass(frozen=True)
class ClassificationTask(Task):
    """Top-1 classification; the attack objective is a loss on the logits (cross-entropy or a margin)."""

    def predict(self, scores: torch.Tensor) -> torch.Tensor:
        return predicted_classes(scores)

    def correct(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return predictions == targets

    def target_problem(self, largest_target: int, outputs: int) -> str | None:
        if largest_target < outputs:
            return None
        return (
            f"labels go up to {largest_target} but the model has {outputs} outputs (classes 0..{outputs - 1})"
        )


ALL_CHECK_KINDS = frozenset(
    {
        "accuracy",
        "export_parity",
        "adversarial",
        "gradient_masking",
        "model_sanity",
        "corruption",
        "attribution",
        "certified",
        "subgroup",
        "calibration",
        "background",
        "attack_selftest",
    }
)

IMAGE_CLASSIFICATION = ClassificationTask(
    name="image_classification",
    description="A classifier of images [N, C, H, W] that outputs one logit (or probability) per class.",
    input_kind="images",
    check_kinds=ALL_CHECK_KINDS,
)

TABULAR_CLASSIFICATION = ClassificationTask(
    name="tabular_classification",
    description="A classifier of feature vectors [N, F] (credit, fraud, triage) that outputs one logit "
    "(or probability) per class.",
    input_kind="features",
    # Attributions are per feature; the image-only methods, metrics and settings (RISE, the mask metrics,
    # occlusion windows) are refused by the table in gate/policy/specs.py, not here.
    check_kinds=ALL_CHECK_KINDS - {"background"},
    why_not=(
        (
            "background",
            "it pastes an image's object on other images' backgrounds, which feature vectors do not have",
        ),
    ),
)
