"""adaptive: auto — the adversarial check diagnoses the model and escalates to the attack the diagnosis
calls for; a model with nothing to diagnose gets the policy's attack alone and the same number."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

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


@pytest.mark.parametrize("factory", ["masked_models:quantized_cnn", "masked_models:detached_cnn"])
def test_non_differentiable_preprocessing_is_attacked_with_bpda(
    factory_run, masked_weights, digits_npz, factory
):
    """Rounding (zero gradients) and a detach (no gradient path): BPDA through the exported graph's twin."""
    plain = _run(factory_run, factory, masked_weights, digits_npz, "off")
    auto = _run(factory_run, factory, masked_weights, digits_npz, "auto")
    record = auto.details["adaptive"]
    assert plain.value > 0.9, plain.message  # the masking works on the plain attack
    assert auto.value <= 0.05, auto.message
    assert record["lowered_by"][0] == "pgd with BPDA", record
    assert record["diagnosis"]["non_differentiable_ops"] == ["Round"]
    assert record["diagnosis"]["disconnected_gradients"] == factory.endswith("detached_cnn")
    assert "Round" in auto.message


def test_onnx_only_quantiser_gets_a_twin_and_bpda(gate_run, tmp_path, digits_cnn, digits_npz):
    """An ONNX file with a Round has a twin (before: none, and only Square ran); BPDA breaks it."""
    from checks.masked_models import QuantizedInputCNN
    from gate.model import export_to_onnx

    model = QuantizedInputCNN()
    model.net.load_state_dict(digits_cnn.state_dict())
    path = tmp_path / "quantised.onnx"
    export_to_onnx(model.eval(), torch.zeros(1, 1, 8, 8), path)
    auto = only_check(gate_run(POLICY.format(adaptive="auto", epsilon=0.2), path, digits_npz))
    assert auto.details["gradients_from"] == "onnx", auto.details
    assert auto.value <= 0.05, auto.message
    assert auto.details["adaptive"]["lowered_by"][0] == "pgd with BPDA"


def test_sharded_escalation_merges_to_the_unsharded_result(tmp_path, digits_cnn, digits_npz):
    """Each shard diagnoses and escalates its own samples; the merge gives the unsharded number and sums
    what each escalation broke."""
    from click.testing import CliRunner

    from checks.masked_models import QuantizedInputCNN
    from gate.cli import main
    from gate.model import export_to_onnx

    model = QuantizedInputCNN()
    model.net.load_state_dict(digits_cnn.state_dict())
    onnx_path = tmp_path / "quantised.onnx"
    export_to_onnx(model.eval(), torch.zeros(1, 1, 8, 8), onnx_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent(POLICY.format(adaptive="auto", epsilon=0.2)).lstrip())
    common = ["check", "-p", str(policy), "-m", str(onnx_path), "-d", str(digits_npz)]

    def invoke(*args: str) -> None:
        result = CliRunner().invoke(main, [*common, *args] if args[0] != "merge" else list(args))
        assert result.exit_code in (0, 1), result.output

    invoke("-o", str(tmp_path / "full"))
    for k in (1, 2):
        invoke("-o", str(tmp_path / f"s{k}"), "--shard", f"{k}/2")
    invoke("merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "-o", str(tmp_path / "merged"))
    full, merged = (
        json.loads((tmp_path / name / "report.json").read_text())["checks"][0] for name in ("full", "merged")
    )
    assert (merged["value"], merged["n"], merged["successes"]) == (
        full["value"],
        full["n"],
        full["successes"],
    )

    def broken(check: dict) -> dict[str, int]:
        return {
            step["escalation"]: step["newly_broken"] for step in check["details"]["adaptive"]["escalations"]
        }

    assert broken(merged)["pgd with BPDA"] == broken(full)["pgd with BPDA"] > 0
    shards = [json.loads((tmp_path / f"s{k}" / "report.json").read_text())["checks"][0] for k in (1, 2)]
    diagnoses = [check["details"]["adaptive"]["diagnosis"] for check in (full, *shards)]
    assert diagnoses[0] == diagnoses[1] == diagnoses[2]  # one probe (the selection's first samples) for all
    assert (
        merged["details"]["adaptive"]["plain_robust_accuracy"]
        == full["details"]["adaptive"]["plain_robust_accuracy"]
    )
