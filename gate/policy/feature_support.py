"""What a policy's ``features:`` section rules out: the checks that measure in the policy's single input
range, which per-feature ranges and units make meaningless, and any task that does not take features.

With a feature schema, budgets are per feature (standardised units, per-feature maximum changes) and the
ranges are the features' own: the image-style attacks (ε in the input range, one box for every value),
the input-range noises and the gradient-masking diagnostics would measure something else, so they are
refused with their line, before anything runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gate.attacks.catalogue import CATALOGUE
from gate.policy.source import position_of
from gate.policy.specs import (
    CORRUPTION_INPUTS,
    AdversarialSpec,
    AttackSelftestSpec,
    AttributionSpec,
    CertifiedSpec,
    CheckSpec,
    CorruptionSpec,
    GradientMaskingSpec,
)

if TYPE_CHECKING:
    from gate.policy.loader import Problem, ResolvedPolicy
    from gate.tasks import Task

FEATURE_ATTACKS = tuple(name for name, info in CATALOGUE.items() if info.feature_space)
FEATURE_CORRUPTIONS = tuple(name for name, kinds in CORRUPTION_INPUTS.items() if kinds == ("features",))
INPUT_RANGE_NOISE_METHODS = ("smoothgrad",)
INPUT_RANGE_NOISE_METRICS = ("max_sensitivity", "feature_importance_stability")
"""Attribution parts whose noise is sized in the policy's one input range, not per feature (yet)."""


def feature_spec_problems(spec: CheckSpec) -> list[tuple[str, str]]:
    """``(field, message)`` for each part of ``spec`` that a policy with a ``features`` section refuses."""
    if isinstance(spec, AdversarialSpec) and not CATALOGUE[spec.attack].feature_space:
        return [
            (
                "attack",
                f"the attack {spec.attack!r} measures ε in the policy's one input range and knows nothing of "
                f"the features section's ranges, types and constraints; with features use "
                f"{', '.join(FEATURE_ATTACKS)} (ε in standardised units of each feature)",
            )
        ]
    if isinstance(spec, GradientMaskingSpec):
        return [
            (
                "kind",
                "gradient_masking runs PGD in the policy's one input range, which a features section "
                "replaces by per-feature ranges; the constrained attack's black-box stage "
                "(constrained-search) covers models whose gradients mislead",
            )
        ]
    if isinstance(spec, AttackSelftestSpec):
        return [
            (
                "kind",
                "attack_selftest plants adversarial examples in an ε-ball of the policy's one input range, "
                "which a features section replaces by per-feature ranges, types and constraints",
            )
        ]
    if isinstance(spec, AttributionSpec):
        problems = []
        if spec.method in INPUT_RANGE_NOISE_METHODS:
            problems.append(("method", _noise_refusal(f"the method {spec.method!r}")))
        if spec.metric in INPUT_RANGE_NOISE_METRICS:
            problems.append(("metric", _noise_refusal(f"the metric {spec.metric!r}")))
        return problems
    if isinstance(spec, CertifiedSpec):
        return [
            (
                "kind",
                "a certificate covers a ball of one radius in the policy's one input range, which a features "
                "section replaces by per-feature ranges, types and constraints; certify the model on "
                "standardised features without a features section, or use the constrained attack",
            )
        ]
    if isinstance(spec, CorruptionSpec) and spec.corruption not in FEATURE_CORRUPTIONS:
        return [
            (
                "corruption",
                f"the corruption {spec.corruption!r} adds noise in the policy's one input range; with a "
                f"features section use {', '.join(FEATURE_CORRUPTIONS)} (noise in each feature's own units)",
            )
        ]
    return []


def _noise_refusal(what: str) -> str:
    return (
        f"{what} adds noise sized in the policy's one input range, which a features section replaces by "
        "per-feature ranges and units; use saliency, input_x_gradient, integrated_gradients or occlusion "
        "with deletion_auc, insertion_auc or randomization_similarity"
    )


def feature_problems(resolved: ResolvedPolicy, task: Task | None) -> list[Problem]:
    """Every problem of a policy's ``features`` section with its task and checks, located in its file."""
    from gate.policy.loader import Problem

    policy = resolved.policy
    if policy.features is None:
        return []
    problems = []
    if task is not None and task.input_kind != "features":
        origin = next(f for f in reversed(resolved.files) if "features" in f.document.model_fields_set)
        problems.append(
            Problem(
                origin.path,
                position_of(origin.raw, ("features",)),
                "features",
                f"a features section describes tabular features [N, F]; the task {task.name} takes "
                f"{task.inputs}",
            )
        )
    for spec in policy.checks:
        for field, message in feature_spec_problems(spec):
            path, position, where = resolved.check_field_location(spec.id, field)
            problems.append(Problem(path, position, where, message))
    return problems


__all__ = ["FEATURE_ATTACKS", "FEATURE_CORRUPTIONS", "feature_problems", "feature_spec_problems"]
