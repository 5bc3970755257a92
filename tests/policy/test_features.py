"""The policy's features section: the constraint language and the schema's own checks, with lines."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gate.policy import PolicyValidationError, load_policy
from gate.policy.constraints import ConstraintSyntaxError, parse_constraint
from gate.policy.features import FeatureSchema


def test_an_equality_with_one_name_on_the_left_determines_that_feature() -> None:
    rule = parse_constraint("total == loan + 2 * interest - 1")
    assert rule.dependent == "total" and rule.premise is None
    assert rule.conclusion.relation == "=="
    assert rule.conclusion.expression.coefficients == {"total": 1.0, "loan": -1.0, "interest": -2.0}
    assert rule.conclusion.expression.constant == 1.0


def test_inequalities_are_normalised_to_at_most_zero() -> None:
    rule = parse_constraint("debt >= 0.4 * income / 2")
    assert rule.conclusion.relation == "<="
    assert rule.conclusion.expression.coefficients == {"income": 0.2, "debt": -1.0}
    assert parse_constraint("a > b").conclusion.relation == "<"
    assert parse_constraint("2 * (a - b) <= 3").conclusion.expression.coefficients == {"a": 2.0, "b": -2.0}


def test_an_implication_and_quoted_names() -> None:
    rule = parse_constraint("if `employment status` == 0 then income <= 1000")
    assert rule.premise is not None and rule.premise.names == ("employment status",)
    assert rule.conclusion.expression.constant == -1000.0
    assert rule.names == ("income", "employment status")
    assert rule.dependent is None


@pytest.mark.parametrize(
    ("text", "fragment", "column"),
    [
        ("a * b <= 1", "not linear", 5),
        ("a <= ", "expected a number", 6),
        ("3 <= 4", "names no feature", 3),
        ("a ! b", "unexpected character '!'", 3),
        ("a / b <= 1", "divide only by a non-zero number", 5),
        ("a <= b c", "unexpected 'c'", 8),
        ("a + b", "expected a comparison", 6),
    ],
)
def test_syntax_errors_name_the_column(text: str, fragment: str, column: int) -> None:
    with pytest.raises(ConstraintSyntaxError) as caught:
        parse_constraint(text)
    assert fragment in str(caught.value) and caught.value.column == column


def test_hostile_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(ConstraintSyntaxError, match="nest deeper than 32"):
        parse_constraint("(" * 500 + "a" + ")" * 500 + " <= 1")
    with pytest.raises(ConstraintSyntaxError, match="nest deeper than 32"):
        parse_constraint("-" * 500 + "a <= 1")
    with pytest.raises(ValidationError, match="at most 2000 characters"):
        FeatureSchema(constraints=["a" * 3000 + " <= 1"])
    assert parse_constraint("((a)) <= -(-1)").conclusion.expression.constant == -1.0
    with pytest.raises(ConstraintSyntaxError, match="too large"):
        parse_constraint("a <= 1e400")
    with pytest.raises(ConstraintSyntaxError, match="beyond what a float holds"):
        parse_constraint("1e300 * 1e300 * a <= 1")


def test_the_schema_refuses_contradictions() -> None:
    with pytest.raises(ValidationError, match="described twice"):
        FeatureSchema(columns=[{"name": "a"}], one_hot=[{"name": "g", "columns": ["a", "b"]}])
    with pytest.raises(ValidationError, match="binary feature takes 0 and 1"):
        FeatureSchema(columns=[{"name": "a", "type": "binary", "range": [0, 2]}])
    with pytest.raises(ValidationError, match="levels apply to ordinal"):
        FeatureSchema(columns=[{"name": "a", "levels": [1, 2]}])
    with pytest.raises(ValidationError, match="ascending"):
        FeatureSchema(columns=[{"name": "a", "type": "ordinal", "levels": [2, 1]}])
    assert FeatureSchema(constraints=["a <= b"]).named() == {"a", "b"}


POLICY = """\
version: 1
task: tabular_classification
features:
  label: outcome
  columns:
    - name: age
      type: integer
      mutable: false
  constraints:
    - total == loan + interest
    - {constraint}
checks:
  - id: robust
    kind: adversarial
    attack: {attack}
    epsilon: 0.3
    min: 0.5
"""


def _write(tmp_path, **values: str):
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY.format(**values), encoding="utf-8")
    return path


def test_a_policy_with_features_loads(tmp_path) -> None:
    policy = load_policy(_write(tmp_path, constraint="loan <= 10 * income", attack="constrained")).policy
    assert policy.features is not None and policy.features.label == "outcome"
    assert [spec.name for spec in policy.features.columns] == ["age"]


def test_a_bad_constraint_is_reported_at_its_line(tmp_path) -> None:
    path = _write(tmp_path, constraint="loan * income <= 3", attack="constrained")
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(path)
    text = str(caught.value)
    assert f"{path}:" in text and "not linear" in text and "features.constraints" in text


def test_input_range_attacks_are_refused_beside_features(tmp_path) -> None:
    path = _write(tmp_path, constraint="loan <= 10 * income", attack="pgd")
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(path)
    text = str(caught.value)
    assert (
        f"{path}:15:" in text
        and "checks[0].attack" in text
        and "cpgd, constrained-search, constrained" in text
    )


def test_features_need_a_task_that_takes_features(tmp_path) -> None:
    body = POLICY.format(constraint="a <= b", attack="constrained").replace(
        "task: tabular_classification\n", "task: image_classification\n"
    )
    path = tmp_path / "policy.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(path)
    text = str(caught.value)
    assert f"{path}:3:1: features:" in text and "features [N, F]" in text


def test_attribution_noise_in_the_input_range_is_refused_beside_features(tmp_path) -> None:
    body = POLICY.format(constraint="a <= b", attack="constrained") + (
        "  - id: stable\n    kind: attribution\n    method: smoothgrad\n    metric: max_sensitivity\n"
        "    max: 1\n  - id: faithful\n    kind: attribution\n    method: integrated_gradients\n"
        "    metric: deletion_auc\n    max: 0.5\n"
    )
    path = tmp_path / "policy.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(path)
    text = str(caught.value)
    assert "checks[1].method: the method 'smoothgrad' adds noise" in text
    assert "checks[1].metric: the metric 'max_sensitivity' adds noise" in text
    assert "checks[2]" not in text
