"""End to end through the CLI: a tabular classifier (breast cancer, 30 features) on ``gate check``.

The task is inferred from the data's shape and stated in the report; every check it supports runs (the
gradient-masking check without its image-only black-box comparison, and says so); a policy asking for
what the task cannot run is refused before the model loads, with the line.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import write_policy
from sklearn.datasets import load_breast_cancer
from torch import nn

from gate.cli import main
from gate.report.model import Report

CHECKS = textwrap.dedent("""
    checks:
      - id: accuracy
        kind: accuracy
        min: 0.85
      - id: parity
        kind: export_parity
        min: 0.9
      - id: pgd
        kind: adversarial
        attack: pgd
        epsilon: 0.02
        min: 0.0
      - id: apgd
        kind: adversarial
        attack: apgd-ce
        norm: l2
        epsilon: 0.1
        steps: 20
        min: 0.0
      - id: masking
        kind: gradient_masking
        epsilon: 0.02
        diagnostic_samples: 64
        max: 10
      - id: sanity
        kind: model_sanity
        diagnostic_samples: 32
      - id: noise
        kind: corruption
        corruption: gaussian_noise
        level: 2
        min: 0.5
""")


@pytest.fixture(scope="module")
def tabular(tmp_path_factory: pytest.TempPathFactory):
    """A small MLP trained on min-max scaled breast cancer features, as ONNX, and held-out data."""
    from gate.model import export_to_onnx

    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.min(0)) / (x.max(0) - x.min(0))).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:400], order[400:]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 2))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    features, labels = torch.from_numpy(x[train]), torch.from_numpy(y[train]).long()
    for _ in range(200):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(features), labels).backward()
        optimiser.step()
    folder = tmp_path_factory.mktemp("tabular")
    onnx_path = folder / "mlp.onnx"
    export_to_onnx(model.eval(), torch.zeros(1, 30), onnx_path)
    data_path = folder / "test.npz"
    np.savez(data_path, x=x[test], y=y[test])
    return onnx_path, data_path


def check(tmp_path, policy, model, data):
    report_dir = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "check",
            "--policy",
            str(policy),
            "--model",
            str(model),
            "--data",
            str(data),
            "--report-dir",
            str(report_dir),
        ],
    )
    assert "Traceback" not in result.output
    return result, report_dir


def test_a_tabular_model_is_judged_with_the_inferred_task(tmp_path, tabular):
    model, data = tabular
    policy = write_policy(tmp_path / "policy.yaml", "version: 1\nname: tabular\n" + CHECKS)
    result, report_dir = check(tmp_path, policy, model, data)
    report = Report.model_validate_json((report_dir / "report.json").read_text())
    assert report.task is not None
    assert (report.task.name, report.task.source, report.task.inputs) == (
        "tabular_classification",
        "inferred",
        "features [N, F]",
    )
    statuses = {c.id: c for c in report.checks}
    assert not [c.message for c in report.checks if c.status == "error"], result.output
    assert statuses["accuracy"].value > 0.85 and statuses["parity"].value == 1.0
    # At eps 0.02 on 30 features in [0, 1] the attacks break some samples (25 and 28 of 163 here), and
    # the session agrees with the gradient model on every adversarial example.
    assert statuses["pgd"].value < statuses["accuracy"].value - 0.05
    assert statuses["apgd"].value < statuses["accuracy"].value - 0.05
    assert statuses["pgd"].details["pytorch_onnx_disagreements"] == 0
    assert statuses["apgd"].details["attacked_samples"] > 100
    assert statuses["masking"].value == 0  # a plain MLP masks nothing: the other three diagnostics are quiet
    masking = statuses["masking"].details
    assert "Square needs images" in masking["blackbox_not_run"]
    assert "black-box comparison not run" in statuses["masking"].message
    assert result.exit_code == 0, result.output


def test_a_check_the_inferred_task_cannot_run_is_refused_with_its_line(tmp_path, tabular):
    model, data = tabular
    body = "version: 1\nname: tabular\n" + CHECKS.replace("attack: pgd", "attack: square")
    policy = write_policy(tmp_path / "policy.yaml", body)
    result, report_dir = check(tmp_path, policy, model, data)
    assert result.exit_code == 2, result.output
    assert f"{policy}:" in result.output and "attack 'square' does not support the task" in result.output
    assert "the data's shape implies tabular_classification" in result.output
    assert not (report_dir / "report.json").exists()


def test_a_policy_task_that_does_not_fit_the_data_is_a_data_error(tmp_path, tabular):
    model, data = tabular
    policy = write_policy(tmp_path / "policy.yaml", "version: 1\ntask: image_classification\n" + CHECKS)
    result, _ = check(tmp_path, policy, model, data)
    assert result.exit_code == 2, result.output
    assert "image_classification takes images [N, C, H, W]" in result.output and "[N, 30]" in result.output
