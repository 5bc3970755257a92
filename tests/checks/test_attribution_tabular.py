"""attribution on a tabular classifier (breast cancer, 30 features) through the CLI: per-feature methods
and metrics, a bar chart of feature importances as evidence, and the image-only parts refused with lines."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import write_policy
from explain.helpers import breast_cancer, train_tabular_mlp
from PIL import Image

from gate.cli import main
from gate.data.evaldata import EvalData
from gate.report.model import Report

CHECKS = textwrap.dedent("""
    checks:
      - id: faithful
        kind: attribution
        method: integrated_gradients
        metric: deletion_auc
        max: 0.6
      - id: occluded
        kind: attribution
        method: occlusion
        baseline: 0.5
        metric: insertion_auc
        min: 0.5
      - id: stable
        kind: attribution
        method: saliency
        metric: feature_importance_stability
        min: 0.8
        examples: 32
      - id: sensitive
        kind: attribution
        method: smoothgrad
        samples: 8
        metric: max_sensitivity
        max: 0.5
        examples: 0
""")


@pytest.fixture(scope="module")
def tabular(tmp_path_factory: pytest.TempPathFactory):
    """The MLP of tests/explain/helpers.py on min-max scaled breast cancer, as ONNX, and held-out data."""
    from gate.model import export_to_onnx

    x_train, y_train, x_test, y_test = breast_cancer()
    folder = tmp_path_factory.mktemp("tabular-attribution")
    onnx_path = folder / "mlp.onnx"
    export_to_onnx(train_tabular_mlp(x_train, y_train), torch.zeros(1, 30), onnx_path)
    data_path = folder / "test.npz"
    np.savez(data_path, x=x_test.numpy(), y=y_test.numpy())
    return onnx_path, data_path


def run_check(tmp_path, body: str, model, data):
    policy = write_policy(tmp_path / "policy.yaml", body)
    report_dir = tmp_path / "out"
    arguments = ["--policy", str(policy), "--model", str(model), "--data", str(data)]
    result = CliRunner().invoke(main, ["check", *arguments, "--report-dir", str(report_dir)])
    assert "Traceback" not in result.output
    return result, policy, report_dir


def test_attributions_of_a_tabular_model_are_judged_per_feature(tmp_path, tabular):
    model, data = tabular
    result, _, report_dir = run_check(tmp_path, "version: 1\nname: tabular\n" + CHECKS, model, data)
    assert result.exit_code == 0, result.output
    report = Report.model_validate_json((report_dir / "report.json").read_text())
    assert report.task is not None and report.task.name == "tabular_classification"
    checks = {check.id: check for check in report.checks}
    assert all(check.status == "pass" for check in checks.values()), [c.message for c in report.checks]
    assert all(check.n == 169 and check.interval is not None for check in checks.values())
    assert checks["faithful"].value < 0.5 and checks["occluded"].value > 0.6
    assert 0.8 < checks["stable"].value <= 1.0 and checks["stable"].details["higher_is_better"] is True

    # Evidence: one bar chart per check, and the ranking it draws in the details, named f0.. (no names).
    (chart,) = checks["stable"].artifacts
    assert chart.endswith("feature_importance.png")
    with Image.open(report_dir / chart) as picture:
        assert picture.format == "PNG"
    top = checks["stable"].details["top_features"]
    assert len(top) == 20 and all(entry["feature"].startswith("f") for entry in top)
    values = [entry["mean_abs_attribution"] for entry in top]
    assert values == sorted(values, reverse=True) and values[0] > 0
    assert checks["sensitive"].artifacts == [] and "top_features" not in checks["sensitive"].details


def test_the_data_feature_names_label_the_ranking(tmp_path, tabular, monkeypatch):
    from sklearn.datasets import load_breast_cancer

    names = tuple(str(name) for name in load_breast_cancer().feature_names)
    # The loaders may not read names yet: stand in for them (the setter lets a dataclass field assign).
    monkeypatch.setattr(
        EvalData, "feature_names", property(lambda self: names, lambda self, value: None), raising=False
    )
    model, data = tabular
    body = "version: 1\nname: tabular\n" + CHECKS.split("  - id: occluded")[0]
    result, _, report_dir = run_check(tmp_path, body, model, data)
    assert result.exit_code == 0, result.output
    (check,) = Report.model_validate_json((report_dir / "report.json").read_text()).checks
    assert {entry["feature"] for entry in check.details["top_features"]} <= set(names)


REFUSED = """
    version: 1
    task: tabular_classification
    checks:
      - id: masks
        kind: attribution
        method: rise
        metric: roi_mass
        min: 0.5
      - id: patches
        kind: attribution
        method: occlusion
        window: 3
        stride: 2
        baseline: mean
        metric: feature_importance_stability
        min: 0.5
"""


def test_the_validator_refuses_what_only_images_have_with_the_line(tmp_path):
    policy = write_policy(tmp_path / "policy.yaml", REFUSED)
    result = CliRunner().invoke(main, ["policy", "validate", str(policy)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    output = " ".join(result.output.split())
    assert (
        f"{policy}:6:5: checks[0].method: the attribution method 'rise' needs images [N, C, H, W]" in output
    )
    assert f"{policy}:7:5: checks[0].metric: the attribution metric 'roi_mass' needs images" in output
    assert "(metrics for it: deletion_auc, insertion_auc, randomization_similarity" in output
    assert f"{policy}:12:5: checks[1].window: window: 3 has no meaning" in output
    assert f"{policy}:13:5: checks[1].stride: stride: 2 has no meaning" in output
    assert f"{policy}:14:5: checks[1].baseline: baseline: mean has no meaning" in output


def test_pointing_game_is_refused_and_the_image_task_keeps_everything(tmp_path):
    body = REFUSED.split("      - id: patches")[0].replace("method: rise", "method: occlusion")
    tabular = write_policy(tmp_path / "tabular.yaml", body.replace("roi_mass", "pointing_game"))
    result = CliRunner().invoke(main, ["policy", "validate", str(tabular)])
    assert result.exit_code == 2 and f"{tabular}:7:5:" in result.output and "pointing_game" in result.output
    images = write_policy(
        tmp_path / "images.yaml", REFUSED.replace("tabular_classification", "image_classification")
    )
    assert CliRunner().invoke(main, ["policy", "validate", str(images)]).exit_code == 0


def test_an_image_only_method_is_refused_before_the_run_when_the_data_implies_tabular(tmp_path, tabular):
    model, data = tabular
    body = REFUSED.replace("    task: tabular_classification\n", "").split("      - id: patches")[0]
    result, policy, report_dir = run_check(tmp_path, body, model, data)
    assert result.exit_code == 2, result.output
    assert f"{policy}:5:" in result.output and "'rise' needs images" in result.output
    assert "the data's shape implies tabular_classification" in result.output
    assert not (report_dir / "report.json").exists()
