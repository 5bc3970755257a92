"""The check specifications: each metric's kind and range written once, float32-sized budgets."""

from __future__ import annotations

import typing

import pytest

from gate.policy.checks import (
    ALL_CHECK_SPECS,
    ATTRIBUTION_METRICS,
    FLOAT32_SMALLEST_NORMAL,
    PROPORTION,
    AttributionMetric,
    AttributionSpec,
    CheckSpec,
    float32_budget,
    kind_of,
)

PROPORTION_METRICS = {"accuracy", "agreement", "robust_accuracy", "corrupted_accuracy", "pointing_game"}


def _one_of_each() -> list[CheckSpec]:
    specs: list[CheckSpec] = []
    for spec_type in ALL_CHECK_SPECS:
        kind = kind_of(spec_type)
        if spec_type is AttributionSpec:
            specs += [
                AttributionSpec(id="a", kind="attribution", metric=m, min=0) for m in ATTRIBUTION_METRICS
            ]
            continue
        extra = {"epsilon": 0.1} if kind in ("adversarial", "gradient_masking") else {}
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
