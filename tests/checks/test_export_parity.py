"""export_parity: the ONNX session agrees with its source; a broken twin or a tight max_abs_diff fails."""

from __future__ import annotations

from checks.conftest import only_check

POLICY = """
    version: 1
    name: parity
    checks:
      - id: parity
        kind: export_parity
        min: 0.95
        {extra}
    """


def test_faithful_export_passes(gate_run, digits_cnn_onnx, digits_npz):
    check = only_check(gate_run(POLICY.format(extra="max_abs_diff: 0.001"), digits_cnn_onnx, digits_npz))
    assert check.status == "pass", check.message
    assert check.n == 297  # a sample agrees when its clean and its noisy copy both agree
    assert check.details["agreement_clean"] == 1.0 and check.details["max_abs_diff_clean"] < 1e-3
    assert check.details["compared_with"] == "its PyTorch twin"


def test_max_abs_diff_is_a_second_threshold(gate_run, digits_cnn_onnx, digits_npz):
    check = only_check(gate_run(POLICY.format(extra="max_abs_diff: 1e-12"), digits_cnn_onnx, digits_npz))
    assert check.status == "fail"
    assert "max_abs_diff" in check.message


def test_noise_radius_defaults_to_the_smallest_linf_epsilon(gate_run, digits_cnn_onnx, digits_npz):
    policy = (
        POLICY.format(extra="")
        + """
      - id: pgd
        kind: adversarial
        attack: fgsm
        epsilon: 0.05
        min: 0.0
    """
    )
    report = gate_run(policy, digits_cnn_onnx, digits_npz)
    assert report.checks[0].details["noise_radius"] == 0.05
