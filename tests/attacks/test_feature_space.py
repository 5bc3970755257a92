"""The tabular threat model: building a space from a schema and data, projecting, settling, judging."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gate.attacks.feature_space import REASONS, FeatureThreat, build_feature_space, reason_names
from gate.errors import DataError
from gate.policy.features import FeatureSchema

NAMES = ("age", "loan", "interest", "total", "rate", "home_own", "home_rent", "grade")


def space(schema: FeatureSchema | None = None, **overrides):
    stats = {
        "low": np.array([18, 0, 0, 0, 0.0, 0, 0, 1], float),
        "high": np.array([90, 100, 10, 110, 1.0, 1, 1, 5], float),
        "std": np.array([10, 20, 2, 22, 0.2, 0.5, 0.5, 1], float),
    }
    stats.update(overrides)
    return build_feature_space(schema, NAMES, input_range=None, source="data.csv", **stats)


SCHEMA = FeatureSchema(
    columns=[
        {"name": "age", "type": "integer", "mutable": False},
        {"name": "loan", "max_change": 5},
        {"name": "grade", "type": "ordinal", "levels": [1, 2, 3, 5]},
    ],
    one_hot=[{"name": "home", "columns": ["home_own", "home_rent"]}],
    constraints=["total == loan + interest", "rate <= 1", "if home_own == 1 then loan <= 90"],
)
CLEAN = torch.tensor(
    [[30.0, 50.0, 5.0, 55.0, 0.5, 1.0, 0.0, 2.0], [60.0, 80.0, 8.0, 88.0, 0.1, 0.0, 1.0, 5.0]]
)


def test_the_schema_sets_limits_types_and_units() -> None:
    built = space(SCHEMA)
    assert built.names == NAMES and built.declared
    assert built.mutable.tolist() == [False, True, True, True, True, True, True, True]
    assert built.integral.tolist() == [True] + [False] * 7
    assert built.levels[7].tolist() == [1, 2, 3, 5]
    assert built.max_change[1] == 5 and torch.isinf(built.max_change[0])
    assert built.scale[3] == 22 and built.scale[5] == 1.0  # one-hot columns: unit 1 unless declared
    assert [rule.text for rule in built.rules] == list(SCHEMA.constraints)
    assert built.rules[0].dependent == 3
    assert (built.violations(CLEAN, CLEAN) == 0).all()


def test_a_schema_that_names_a_missing_feature_or_a_range_the_data_exceeds_is_a_data_error() -> None:
    with pytest.raises(DataError, match="'salary', which the data does not have"):
        space(FeatureSchema(constraints=["salary >= 0"]))
    with pytest.raises(
        DataError, match=r"feature 'age' takes values in \[18, 90\].*outside its range \[20, 90\]"
    ):
        space(FeatureSchema(columns=[{"name": "age", "range": [20, 90]}]))


def test_each_kind_of_violation_has_its_reason() -> None:
    built = space(SCHEMA)
    cases = {
        "immutable": (0, 31.0),
        "range": (4, 1.5),
        "type": (7, 4.0),  # between the ordinal levels 3 and 5
        "one_hot": (6, 1.0),  # two categories at once
        "constraint": (2, 6.0),  # total no longer equals loan + interest
    }
    for reason, (feature, value) in cases.items():
        changed = CLEAN.clone()
        changed[0, feature] = value
        bits = built.violations(changed, CLEAN)
        assert reason in reason_names(int(bits[0])), reason
        assert bits[1] == 0
    implied = CLEAN.clone()
    implied[0, 1], implied[0, 3] = 95.0, 100.0  # home_own == 1 forbids a loan above 90
    assert reason_names(int(built.violations(implied, CLEAN)[0])) == ["constraint"]
    assert "'if home_own == 1 then loan <= 90' does not hold" in built.first_violation(implied[0], CLEAN[0])


def test_the_budget_is_standardised_and_per_feature_limits_bind() -> None:
    threat = FeatureThreat(space(SCHEMA), "linf", 0.5)
    far = CLEAN + 100
    projected = threat.project(far, CLEAN)
    assert projected[0, 0] == CLEAN[0, 0]  # immutable
    assert projected[0, 1] == CLEAN[0, 1] + 5  # max_change (5) before 0.5 std (10)
    assert projected[0, 2] == CLEAN[0, 2] + 1  # 0.5 std of interest
    assert torch.all(projected <= space(SCHEMA).high)
    l2 = FeatureThreat(space(SCHEMA), "l2", 0.5)
    step = l2.project(CLEAN + torch.tensor([0, 0, 2.0, 0, 0, 0, 0, 0]), CLEAN)
    assert torch.allclose(l2.distance(CLEAN, step), torch.tensor([0.5, 0.5]))
    ok, bits = threat.feasible(CLEAN + torch.tensor([0, 6.0, 0, 6.0, 0, 0, 0, 0]), CLEAN)
    assert not ok.any() and all("budget" in reason_names(int(b)) for b in bits)


def test_settling_repairs_rounds_and_stays_inside() -> None:
    threat = FeatureThreat(space(SCHEMA), "linf", 2.0)
    moved = CLEAN + torch.tensor([[0.4, 3.0, 1.5, 0.0, 0.05, -0.7, 0.6, 1.2]] * 2)
    settled = threat.settle(moved, CLEAN)
    assert torch.equal(settled[:, 0], CLEAN[:, 0])
    assert torch.allclose(settled[:, 3], settled[:, 1] + settled[:, 2])  # total recomputed
    assert settled[0, 5:7].tolist() == [0.0, 1.0]  # the larger one-hot column wins
    assert settled[0, 7] == 3.0  # 3.2 snaps to the nearest level
    ok, bits = threat.feasible(settled, CLEAN)
    assert ok.all(), [reason_names(int(b)) for b in bits]


def test_integer_rounding_never_leaves_the_budget() -> None:
    schema = FeatureSchema(columns=[{"name": "grade", "type": "integer", "scale": 1}])
    threat = FeatureThreat(space(schema), "linf", 0.6)
    settled = threat.settle(CLEAN + torch.tensor([0, 0, 0, 0, 0, 0, 0, 0.6]), CLEAN)
    assert settled[0, 7] in (2.0, 3.0) and abs(float(settled[0, 7] - CLEAN[0, 7])) <= 0.6
    assert threat.feasible(settled, CLEAN)[0].all()


def test_without_a_schema_only_ranges_and_the_budget_apply() -> None:
    built = build_feature_space(
        None, ("a", "b"), low=np.zeros(2), high=np.ones(2), std=np.array([0.5, 0.0]), input_range=(0.0, 1.0),
        source="x.npz",
    )  # fmt: skip
    assert not built.declared and built.scale.tolist() == [0.5, 1.0]  # a constant feature gets unit 1
    x = torch.tensor([[0.2, 0.3]])
    assert built.violations(x + 0.1, x).item() == 0
    assert built.violations(x + 0.9, x).item() == REASONS["range"]
