"""gradient_masking: a model that hides its gradients is caught; an honest model is not flagged."""

from __future__ import annotations

from checks.conftest import only_check
from gate.checks.gradient_masking import clipped_sweep, default_sweep, describe_budget
from gate.policy.specs import GradientMaskingSpec

POLICY = """
    version: 1
    name: masking
    checks:
      - id: masking
        kind: gradient_masking
        epsilon: 0.2
        steps: 10
        queries: 300
        diagnostic_samples: 64
        max: 0
    """


def test_input_quantisation_is_flagged(factory_run, masked_weights, digits_npz):
    check = only_check(factory_run(POLICY, "masked_models:quantized_cnn", masked_weights, digits_npz))
    codes = {finding.code for finding in check.findings}
    assert check.status == "fail"
    assert {"zero_or_nan_gradients", "blackbox_beats_whitebox"} <= codes, check.message
    assert check.details["zero_or_nan_gradient_fraction"] > 0.9
    assert check.artifacts == ["artifacts/masking/epsilon-sweep.png"]


def test_standard_model_shows_no_masking(factory_run, standard_weights, digits_npz):
    check = only_check(factory_run(POLICY, "gate.demo.models:digits_cnn", standard_weights, digits_npz))
    assert check.status == "pass", check.message
    assert check.value == 0 and check.findings == []
    sweep = check.details["sweep"]["robust_accuracy"]
    assert sweep[-1] <= 0.05 and sweep == sorted(sweep, reverse=True)


# --------------------------------------------------------------------- issue 21
def test_a_detached_input_is_a_finding_not_an_error(factory_run, masked_weights, digits_npz):
    """torch.autograd.grad used to raise on it, and the check ended as error."""
    check = only_check(factory_run(POLICY, "masked_models:detached_cnn", masked_weights, digits_npz))
    assert check.status == "fail", check.message
    assert [finding.code for finding in check.findings] == ["disconnected_gradients"]
    assert check.value == 1 and "BPDA" in check.findings[0].message
    assert "sweep" not in check.details and "not run" in check.message
    assert check.artifacts == []


def _spec(**fields) -> GradientMaskingSpec:
    return GradientMaskingSpec(id="masking", kind="gradient_masking", **fields)


def test_linf_sweep_stops_at_the_input_range_width():
    # 4 x 0.3 = 1.2 on a range 1 wide is the same attack as the whole range: quoted once, as 1.
    assert default_sweep(_spec(epsilon=0.3), (0.0, 1.0), 64) == [0.075, 0.15, 0.3, 0.6, 1.0]
    assert default_sweep(_spec(epsilon=0.5), (-1.0, 1.0), 64) == [0.125, 0.25, 0.5, 1.0, 2.0]


def test_l2_sweep_stops_at_the_diameter_of_the_input_box():
    assert default_sweep(_spec(epsilon=3.0, norm="l2"), (0.0, 1.0), 64) == [0.75, 1.5, 3.0, 6.0, 8.0]


def test_budgets_covering_the_whole_range_are_described_so():
    assert describe_budget(0.2, 1.0) == "ε=0.2"
    assert "whole input range" in describe_budget(8.0, 8.0)
    assert clipped_sweep([3.0, 0.1, 1.5, 1.0], 1.0) == [0.1, 1.0]


def test_sweep_messages_quote_clipped_budgets(factory_run, masked_weights, digits_npz):
    policy = POLICY.replace("diagnostic_samples: 64", "diagnostic_samples: 32\n        sweep: [0.1, 1.5, 3]")
    check = only_check(factory_run(policy, "masked_models:quantized_cnn", masked_weights, digits_npz))
    assert check.details["sweep"]["epsilon"] == [0.1, 1.0]
    (unbounded,) = [f for f in check.findings if f.code == "unbounded_attack_fails"]
    assert unbounded.data["epsilon"] == 1.0
    assert "whole input range" in unbounded.message and "ε=3" not in unbounded.message
