"""gradient_masking: a model that hides its gradients is caught; an honest model is not flagged."""

from __future__ import annotations

from checks.conftest import only_check

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
