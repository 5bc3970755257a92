"""attribution: methods x metrics through the check, masks required where localisation is judged."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from checks.conftest import only_check
from gate.checks import attribution
from gate.policy.specs import AttributionSpec

POLICY = """
    version: 1
    name: attribution
    checks:
      - id: explain
        kind: attribution
        method: {method}
        metric: {metric}
        {threshold}
    """


@pytest.fixture()
def masked_npz(tmp_path, digits_split):
    """Held-out digits with a mask on the digit's ink (the evidence)."""
    x = digits_split["x_test"][:40]
    path = tmp_path / "masked.npz"
    np.savez(path, x=x, y=digits_split["y_test"][:40], mask=(x[:, 0] > 0.2).astype(np.float32))
    return path


@pytest.mark.parametrize(
    ("method", "metric", "threshold"),
    [
        ("occlusion", "deletion_auc", "max: 0.6"),
        ("integrated_gradients", "insertion_auc", "min: 0.3"),
        ("input_x_gradient", "roi_mass", "min: 0.5"),
        ("rise", "pointing_game", "min: 0.3"),
    ],
)
def test_standard_model_meets_sane_thresholds(
    gate_run, digits_cnn_onnx, masked_npz, method, metric, threshold
):
    spec = POLICY.format(method=method, metric=metric, threshold=threshold)
    check = only_check(gate_run(spec, digits_cnn_onnx, masked_npz))
    assert check.status == "pass", check.message
    assert check.n == 40 and check.interval is not None
    assert len(check.artifacts) == 4 and check.artifacts[0].endswith(".png")


def test_localisation_without_masks_is_a_clear_error(gate_run, digits_cnn_onnx, digits_npz):
    spec = POLICY.format(method="saliency", metric="roi_mass", threshold="min: 0.5")
    check = only_check(gate_run(spec, digits_cnn_onnx, digits_npz, samples=20))
    assert check.status == "error" and "mask" in check.message


def test_randomisation_sanity_on_the_source_model(factory_run, standard_weights, digits_npz):
    spec = POLICY.format(method="saliency", metric="randomization_similarity", threshold="max: 0.6")
    check = only_check(
        factory_run(spec, "gate.demo.models:digits_cnn", standard_weights, digits_npz, samples=40)
    )
    assert check.status == "pass", check.message
    assert check.value < 0.4


def test_randomisation_of_a_twin_without_parameters_fails_closed(gate_run, digits_cnn_onnx, digits_npz):
    spec = POLICY.format(method="saliency", metric="randomization_similarity", threshold="max: 0.6")
    check = only_check(gate_run(spec, digits_cnn_onnx, digits_npz, samples=20))
    assert check.status == "error" and "no parameters to randomise" in check.message


def test_occlusion_counts_its_passes_up_front_and_warns_over_the_budget(
    gate_run, digits_cnn_onnx, digits_npz, monkeypatch, caplog
):
    spec = POLICY.format(method="occlusion", metric="deletion_auc", threshold="max: 0.6")
    within = only_check(gate_run(spec, digits_cnn_onnx, digits_npz, samples=10))
    # 8 x 8 digits: the default window is 2 pixels and the stride 1, 7 x 7 patches; 10 samples + 4 examples
    assert within.details["occlusion"] == {
        "window": 2,
        "stride": 1,
        "patches_per_sample": 49,
        "forward_passes": 14 * 50,
        "forward_pass_budget": attribution.OCCLUSION_PASS_BUDGET,
    }
    assert within.status == "pass" and "budget" not in within.message
    monkeypatch.setattr(attribution, "OCCLUSION_PASS_BUDGET", 600)
    strided = spec.replace(
        "metric: deletion_auc", "metric: deletion_auc\n        window: 4\n        stride: 3"
    )
    over = only_check(gate_run(strided, digits_cnn_onnx, digits_npz, samples=10))
    assert over.details["occlusion"]["patches_per_sample"] == 9 and over.status == "pass"
    over = only_check(gate_run(spec, digits_cnn_onnx, digits_npz, samples=10))
    assert over.status == "pass", over.message  # a warning in the message, not a failure
    assert "occlusion needs 700 forward passes (49 patches per sample (window 2, stride 1))" in over.message
    assert "over the budget of 600" in over.message and "larger window or stride" in over.message
    assert "over the budget of 600" in caplog.text


def test_a_stride_longer_than_the_window_is_refused_by_the_policy():
    fields = {"id": "a", "kind": "attribution", "method": "occlusion", "metric": "deletion_auc", "max": 0.5}
    with pytest.raises(ValidationError, match=r"stride \(3\) is longer than window \(2\)"):
        AttributionSpec(**fields, window=2, stride=3)
    assert AttributionSpec(**fields, stride=3).window is None  # the default window is chosen at run time
