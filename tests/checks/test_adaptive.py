"""adaptive: auto — the adversarial check diagnoses the model and escalates to the attack the diagnosis
calls for; a model with nothing to diagnose gets the policy's attack alone and the same number."""

from __future__ import annotations

import pytest

from checks.conftest import only_check

POLICY = """
    version: 1
    name: adaptive
    samples: 64
    checks:
      - id: pgd
        kind: adversarial
        attack: pgd
        epsilon: {epsilon}
        steps: 10
        adaptive: {adaptive}
        eot_samples: 10
        examples: 0
        min: 0
    """


def _run(factory_run, factory: str, weights, data, adaptive: str, epsilon: float = 0.2):
    policy = POLICY.format(adaptive=adaptive, epsilon=epsilon)
    return only_check(factory_run(policy, factory, weights, data))


@pytest.mark.parametrize("weights", ["standard_weights", "robust_weights"])
def test_undefended_and_pgd_trained_models_are_not_escalated(factory_run, weights, digits_npz, request):
    """Nothing to diagnose: the same number, no escalation run, nothing judged twice."""
    weights = request.getfixturevalue(weights)
    plain = _run(factory_run, "gate.demo.models:digits_cnn", weights, digits_npz, "off")
    auto = _run(factory_run, "gate.demo.models:digits_cnn", weights, digits_npz, "auto")
    assert auto.value == plain.value
    record = auto.details["adaptive"]
    assert record["escalations"] == [] and record["judged_over_draws"] == 1, record
    assert not any(value for value in record["diagnosis"].values()), record["diagnosis"]
    assert "adaptive" not in plain.details


def test_saturated_logits_escalate_to_margin_losses(factory_run, masked_weights, digits_npz):
    plain = _run(factory_run, "masked_models:scaled_logits_cnn", masked_weights, digits_npz, "off")
    auto = _run(factory_run, "masked_models:scaled_logits_cnn", masked_weights, digits_npz, "auto")
    assert auto.status != "error", auto.message
    record = auto.details["adaptive"]
    assert record["diagnosis"]["dead_gradient_fraction"] > 0.5, record
    assert record["lowered_by"][0] == "apgd-dlr", record
    assert auto.value < plain.value - 0.3, (plain.value, auto.value)
    assert "apgd-dlr broke" in auto.message


def test_randomised_model_is_judged_over_draws_and_attacked_with_eot(factory_run, masked_weights, digits_npz):
    """Gaussian noise at inference: one draw's verdict is a lucky draw; EOT and ten passes are not."""
    plain = _run(factory_run, "adaptive_models:gaussian_noise_cnn", masked_weights, digits_npz, "off", 0.1)
    auto = _run(factory_run, "adaptive_models:gaussian_noise_cnn", masked_weights, digits_npz, "auto", 0.1)
    assert auto.status != "error", auto.message
    record = auto.details["adaptive"]
    assert record["diagnosis"]["randomized_outputs"] and record["judged_over_draws"] == 10, record
    assert "pgd with EOT" in record["lowered_by"], record
    assert auto.value <= plain.value - 0.1, (plain.value, auto.value)
    assert "randomised outputs: judged over 10 draws" in auto.message
