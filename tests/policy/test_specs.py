"""The check specifications: each metric's kind and range written once, float32-sized budgets."""

from __future__ import annotations

import typing

import pytest
from pydantic import ValidationError

from gate.attacks.catalogue import masking_diagnosable
from gate.policy import PolicyValidationError, load_policy
from gate.policy.specs import (
    ALL_CHECK_SPECS,
    ATTRIBUTION_METRICS,
    FLOAT32_SMALLEST_NORMAL,
    PROPORTION,
    AttributionMetric,
    AttributionSpec,
    CheckSpec,
    GradientMaskingSpec,
    float32_budget,
    kind_of,
)

from .helpers import WritePolicy

PROPORTION_METRICS = {
    "accuracy",
    "agreement",
    "robust_accuracy",
    "corrupted_accuracy",
    "pointing_game",
    "certified_accuracy",
    "verified_accuracy",
    "planted_found_rate",
}


def _one_of_each() -> list[CheckSpec]:
    specs: list[CheckSpec] = []
    for spec_type in ALL_CHECK_SPECS:
        kind = kind_of(spec_type)
        if spec_type is AttributionSpec:
            specs += [
                AttributionSpec(id="a", kind="attribution", metric=m, min=0) for m in ATTRIBUTION_METRICS
            ]
            continue
        if kind == "certified":
            specs.append(spec_type(id="a", kind=kind, min=0, sigma=0.25, radius=0.5))
            specs.append(spec_type(id="a", kind=kind, min=0, method="interval_bounds", radius=0.1))
            continue
        extra = {"epsilon": 0.1} if kind in ("adversarial", "gradient_masking", "attack_selftest") else {}
        extra |= {"corruption": "jpeg"} if kind == "corruption" else {}
        specs.append(spec_type(id="a", kind=kind, min=0, **extra))
    return specs


def test_the_attribution_metrics_are_listed_once() -> None:
    assert typing.get_args(AttributionMetric) == tuple(ATTRIBUTION_METRICS)


def test_every_metric_has_a_scale_and_the_proportions_are_the_counted_ones() -> None:
    specs = _one_of_each()
    proportions = {spec.metric_name for spec in specs if spec.proportion}
    assert proportions == PROPORTION_METRICS
    assert all(spec.metric_scale is PROPORTION for spec in specs if spec.metric_name in PROPORTION_METRICS)


def test_the_direction_of_attribution_metrics_comes_from_the_table() -> None:
    lower_is_better = {name for name, info in ATTRIBUTION_METRICS.items() if not info.higher_is_better}
    assert lower_is_better == {"deletion_auc", "randomization_similarity", "max_sensitivity"}
    spec = AttributionSpec(id="a", kind="attribution", metric="deletion_auc", max=0.5)
    assert spec.better_when_higher is False


@pytest.mark.parametrize("value", [0.0, FLOAT32_SMALLEST_NORMAL, 1e-30, 8 / 255, 1.0, 3.4e38])
def test_float32_budget_keeps_what_float32_holds(value: float) -> None:
    assert float32_budget(value) == value


@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        (1e-300, "rounds to 0"),
        (5e-324, "rounds to 0"),
        (1e-40, "rounds to the subnormal"),
        (FLOAT32_SMALLEST_NORMAL * 0.999, "rounds to the subnormal"),
        (1e39, "the largest float32"),
        (1e300, "the largest float32"),
    ],
)
def test_float32_budget_refuses_what_float32_cannot_hold(value: float, phrase: str) -> None:
    with pytest.raises(ValueError, match=phrase):
        float32_budget(value)


# ------------------------------------------------------------------ what the chosen attack can honour
def _adversarial(fields: str) -> str:
    return f"version: 1\nchecks:\n  - id: a\n    kind: adversarial\n    epsilon: 0.1\n    min: 0.1\n{fields}"


@pytest.mark.parametrize(
    ("fields", "line", "field", "phrase"),
    [
        ("    attack: pgd\n    queries: 100\n", 8, "queries", "the attack pgd does not read queries"),
        ("    attack: square\n    steps: 100\n", 8, "steps", "choose an attack that reads it (pgd, apgd-ce"),
        ("    attack: autoattack\n    restarts: 2\n", 8, "restarts", "it reads steps, queries"),
        ("    attack: fgsm\n    steps: 5\n", 8, "steps", "of the attack options it reads targeted"),
        (
            "    attack: apgd-ce\n    step_size: 1/255\n",
            8,
            "step_size",
            "choose an attack that reads it (pgd)",
        ),
        ("    attack: apgd-ce\n    targeted: true\n", 8, "targeted", "apgd-ce has no targeted version"),
        (
            "    targeted: true\n    attack: square\n",
            7,
            "targeted",
            "attacks that do: fgsm, pgd, apgd-dlr, fab",
        ),
    ],
)
def test_an_option_the_attack_would_ignore_is_refused_at_its_line(
    write_policy: WritePolicy, fields: str, line: int, field: str, phrase: str
) -> None:
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(write_policy(_adversarial(fields)))
    (problem,) = caught.value.problems
    assert (problem.position.line if problem.position else None, problem.field) == (
        line,
        f"checks[0].{field}",
    )
    assert phrase in problem.message


@pytest.mark.parametrize(
    "fields",
    [
        "    attack: pgd\n    steps: 40\n    restarts: 2\n    step_size: 1/255\n    targeted: true\n",
        "    attack: fab\n    targeted: true\n    steps: 20\n",
        "    attack: apgd-dlr\n    restarts: 3\n",
        "    attack: square\n    queries: 300\n    restarts: 2\n",
        "    attack: autoattack\n    steps: 10\n    queries: 100\n    restarts: 1\n",
        "    attack: fgsm\n    targeted: true\n    norm: l2\n",
    ],
)
def test_options_the_attack_reads_are_accepted(write_policy: WritePolicy, fields: str) -> None:
    load_policy(write_policy(_adversarial(fields)))


def test_gradient_masking_accepts_the_catalogue_attacks_it_can_diagnose() -> None:
    for attack in masking_diagnosable():
        GradientMaskingSpec(id="m", kind="gradient_masking", epsilon=0.1, attack=attack)
    with pytest.raises(ValidationError, match="literal_error"):
        GradientMaskingSpec(id="m", kind="gradient_masking", epsilon=0.1, attack="square")
