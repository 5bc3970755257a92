"""attribution: methods x metrics through the check, masks required where localisation is judged."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from torch import nn

from checks.conftest import only_check
from gate.checks import attribution
from gate.errors import CheckError
from gate.policy.specs import AttributionSpec
from gate.report.html import HtmlFormat

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
    gate_run, digits_cnn_onnx, masked_npz, method, metric, threshold, tmp_path
):
    spec = POLICY.format(method=method, metric=metric, threshold=threshold)
    check = only_check(gate_run(spec, digits_cnn_onnx, masked_npz))
    assert check.status == "pass", check.message
    assert check.n == 40 and check.interval is not None
    assert check.details["largest_probability_change"] > 0.5  # far above the floor for input independence
    curves = [name for name in check.artifacts if name.endswith("_curve.png")]
    assert len(check.artifacts) == 4 + len(curves) and check.artifacts[-1].endswith(".png")
    if metric in attribution.CURVES:
        kind = metric.removesuffix("_auc")
        assert curves == [f"artifacts/explain/{kind}_curve.png"] == check.artifacts[:1]
        picture = Image.open(tmp_path / "report" / curves[0])
        assert picture.width >= 400
        described = picture.text["Description"]
        assert described.startswith(f"{kind} curve: mean of 40 samples, AUC = ")
        assert float(described.rsplit("= ", 1)[1]) == pytest.approx(check.value, abs=1e-3)


def test_localisation_without_masks_is_a_clear_error(gate_run, digits_cnn_onnx, digits_npz):
    spec = POLICY.format(method="saliency", metric="roi_mass", threshold="min: 0.5")
    check = only_check(gate_run(spec, digits_cnn_onnx, digits_npz, samples=20))
    assert check.status == "error" and "mask" in check.message


def test_randomisation_sanity_on_the_source_model(factory_run, standard_weights, digits_npz, tmp_path):
    spec = POLICY.format(method="saliency", metric="randomization_similarity", threshold="max: 0.6")
    report = factory_run(spec, "gate.demo.models:digits_cnn", standard_weights, digits_npz, samples=40)
    check = only_check(report)
    assert check.status == "pass", check.message
    assert check.value < 0.4
    maps = "artifacts/explain/randomization_maps.png"
    assert check.artifacts[0] == maps and len(check.artifacts) == 5  # the maps, then 4 heatmaps
    picture = Image.open(tmp_path / "report" / maps)
    assert picture.height >= 4 * 128 and picture.width >= 3 * 128  # 4 examples x (input, trained, random)
    correlations = picture.text["Description"].splitlines()
    assert len(correlations) == 4 and all(line.startswith("ρ = ") for line in correlations)
    html = HtmlFormat(tmp_path / "report").render(report)
    assert f'alt="{maps}"' in html and "data:image/png;base64," in html


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


class FixedLogits(nn.Module):
    """The same logits for every input, plus ``scale`` times another model's (a trace of dependence)."""

    def __init__(self, trace: nn.Module | None = None, scale: float = 0.0) -> None:
        super().__init__()
        self.fixed = nn.Linear(64, 10)  # zero weights: the bias is the logits
        with torch.no_grad():
            self.fixed.weight.zero_()
            self.fixed.bias.copy_(torch.linspace(-1.0, 1.0, 10))
        self.trace, self.scale = trace, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fixed = self.fixed(x.flatten(1))
        return fixed if self.trace is None else fixed + self.scale * self.trace(x)


class CentreOnly(nn.Module):
    """A trained model shown only the 4 x 4 centre of the digit: it ignores most of its input, not all."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("centre", torch.zeros(1, 1, 8, 8).index_fill_(2, torch.arange(2, 6), 1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * self.centre * self.centre.transpose(2, 3))


def exported(tmp_path, module: nn.Module, name: str):
    from gate.model import export_to_onnx

    path = tmp_path / f"{name}.onnx"
    export_to_onnx(copy.deepcopy(module).eval(), torch.zeros(1, 1, 8, 8), path)
    return path


@pytest.mark.parametrize(
    ("metric", "threshold", "words"),
    [
        ("deletion_auc", "max: 0.6", "deletion AUC is meaningless"),
        ("insertion_auc", "min: 0.01", "insertion AUC is meaningless"),
        ("max_sensitivity", "max: 0.5", "max sensitivity is meaningless"),
    ],
)
def test_a_constant_model_is_an_error_not_a_pass(gate_run, tmp_path, digits_npz, metric, threshold, words):
    spec = POLICY.format(method="occlusion", metric=metric, threshold=threshold)
    check = only_check(gate_run(spec, exported(tmp_path, FixedLogits(), "constant"), digits_npz, samples=10))
    assert check.status == "error", check.message
    assert f"the model's outputs do not depend on its input: {words}" in check.message
    assert "under the tolerance 0.001" in check.message


def test_a_trace_of_input_dependence_is_still_refused(gate_run, tmp_path, digits_npz, digits_cnn):
    spec = POLICY.format(method="occlusion", metric="deletion_auc", threshold="max: 0.6")
    faint = exported(tmp_path, FixedLogits(digits_cnn, scale=1e-5), "faint")
    check = only_check(gate_run(spec, faint, digits_npz, samples=10))
    assert check.status == "error" and "deletion AUC is meaningless" in check.message
    assert "moved by at most 0" not in check.message  # it moved, by less than the tolerance


def test_a_model_that_reads_only_part_of_its_input_is_judged(gate_run, tmp_path, digits_npz, digits_cnn):
    spec = POLICY.format(method="occlusion", metric="deletion_auc", threshold="max: 0.9")
    centre = exported(tmp_path, CentreOnly(digits_cnn), "centre")
    check = only_check(gate_run(spec, centre, digits_npz, samples=10))
    assert check.status in ("pass", "fail"), check.message
    assert check.details["largest_probability_change"] > 0.1


def test_randomisation_of_all_zero_maps_is_refused_with_its_reason():
    fields = {"id": "a", "kind": "attribution", "metric": "randomization_similarity", "max": 0.5}
    spec = AttributionSpec(**fields, method="saliency")
    with pytest.raises(CheckError, match="randomization similarity is meaningless"):
        attribution.refuse_input_independent(spec, torch.zeros(4), torch.zeros(4))
    attribution.refuse_input_independent(spec, torch.zeros(4), torch.tensor([0.0, 0.0, 0.2, 0.0]))


def test_deletion_removes_pixels_to_the_baseline_the_policy_names(gate_run, digits_cnn_onnx, digits_npz):
    """``baseline: mean`` replaces deleted pixels by each image's per-channel mean, not by 0 (the curves
    used 0 whatever the policy said; saliency does not read the baseline, so only the curves can differ)."""
    values = {}
    for baseline in ("zero", "mean"):
        spec = POLICY.format(method="saliency", metric="deletion_auc", threshold="max: 1.0")
        spec += f"    baseline: {baseline}\n"
        values[baseline] = only_check(gate_run(spec, digits_cnn_onnx, digits_npz, samples=12)).value
    assert values["mean"] is not None and 0.0 <= values["mean"] <= 1.0
    assert values["mean"] != pytest.approx(values["zero"], abs=1e-3)
