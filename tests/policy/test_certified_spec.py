"""The ``certified`` check kind in the policy format: defaults, refusals at their lines, explain and diff."""

from __future__ import annotations

import pytest

from gate.policy import load_policy
from gate.policy.diff import diff_policies
from gate.policy.plain_language import explain_policy

from .helpers import WritePolicy, only_problem

POLICY = """\
version: 1
name: certified
checks:
  - id: cert
    kind: certified
{fields}
    min: 0.3
"""


def policy_with(write_policy: WritePolicy, fields: str, name: str = "policy.yaml"):
    lines = "\n".join(f"    {line}" for line in fields.strip().splitlines())
    return write_policy(POLICY.format(fields=lines), name=name)


def test_smoothing_defaults_follow_the_paper_and_the_metric_is_certified_accuracy(write_policy) -> None:
    policy = load_policy(policy_with(write_policy, "sigma: 0.25\nradius: 0.5")).policy
    (spec,) = policy.checks
    assert (spec.method, spec.norm, spec.metric_name) == ("randomized_smoothing", "l2", "certified_accuracy")
    assert [spec.smoothing_option(name) for name in ("n0", "n", "alpha", "batch")] == [
        100,
        10_000,
        0.001,
        1000,
    ]


def test_interval_bounds_report_verified_accuracy(write_policy) -> None:
    policy = load_policy(
        policy_with(write_policy, "method: interval_bounds\nnorm: linf\nradius: 1/255")
    ).policy
    assert policy.checks[0].metric_name == "verified_accuracy"
    assert policy.checks[0].radius == pytest.approx(1 / 255)


@pytest.mark.parametrize(
    ("fields", "field", "needle", "line"),
    [
        ("radius: 0.5", "sigma", "randomized_smoothing needs sigma", 4),
        ("sigma: 0.25\nnorm: linf\nradius: 0.5", "norm", "certifies l2 balls, not linf", 7),
        ("method: interval_bounds\nradius: 0.1\nn: 500", "n", "an option of randomized_smoothing", 8),
        ("sigma: 0.25\nradius: 0.5\nalpha: 0.7", "alpha", "less than 0.5", 8),
        ("sigma: 0.25\nradius: 0.7\nn: 1000", "radius", "certify at most sigma·Φ⁻¹(alpha^(1/n)) = 0.6158", 7),
    ],
)
def test_what_a_method_cannot_honour_is_refused_at_its_line(
    write_policy, fields, field, needle, line
) -> None:
    problem = only_problem(policy_with(write_policy, fields))
    assert needle in problem.message and problem.field.endswith(field)
    assert problem.position is not None and problem.position.line == line


def test_explain_says_what_is_certified_and_what_it_costs(write_policy) -> None:
    resolved = load_policy(policy_with(write_policy, "sigma: 0.25\nradius: 0.5\nn: 1000"))
    text = explain_policy(resolved)
    assert "randomized smoothing (Cohen et al. 2019)" in text and "σ = 1/4 ≈ 0.25" in text
    assert "100 + 1000 noisy forward passes per sample" in text and "L2 ball of radius 1/2" in text
    assert "abstentions count as wrong" in text


def test_diff_reads_a_larger_radius_as_stricter(write_policy) -> None:
    old = load_policy(policy_with(write_policy, "sigma: 0.25\nradius: 0.25", "old.yaml")).policy
    new = load_policy(policy_with(write_policy, "sigma: 0.5\nradius: 0.5", "new.yaml")).policy
    changes = {change.field: change for change in diff_policies(old, new)}
    assert changes["radius"].direction == "stricter"
    assert changes["sigma"].direction == "neutral" and "smoothed classifier" in changes["sigma"].reason
