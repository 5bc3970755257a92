"""attribution: methods x metrics through the check, masks required where localisation is judged."""

from __future__ import annotations

import numpy as np
import pytest

from checks.conftest import only_check

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
