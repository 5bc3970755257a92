"""The runner's own decisions, through ``run_gate``: here, that an ONNX-only model's twin is compared with
the session on the evaluation data before any check takes gradients from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import write_policy
from torch import nn

import gate.model.under_test as under_test
from gate.data import load_data
from gate.model import ModelSpec
from gate.report.model import Report
from gate.runner import RunOptions, run_gate

SAMPLES, SEED, BATCH = 64, 5, 32
POLICY = f"""
    version: 1
    name: twin
    samples: {SAMPLES}
    seed: {SEED}
    checks:
      - id: accuracy
        kind: accuracy
        min: 0.5
      - id: fgsm
        kind: adversarial
        attack: fgsm
        epsilon: 0.05
        min: 0.0
    """


class WrongOnRealDigits(nn.Module):
    """The twin, off by 1 on every logit of a sample that looks like a digit (over a quarter of its pixels
    exactly black), except ``spared``. Random inputs in [0, 1] have no exactly black pixel, and ``spared``
    is the example input the model is loaded with: the load-time comparison finds nothing wrong."""

    def __init__(self, twin: nn.Module, spared: torch.Tensor) -> None:
        super().__init__()
        self.twin = twin
        self.register_buffer("spared", spared.flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        digit_like = (x == 0).flatten(1).float().mean(dim=1) > 0.25
        spared = (x.flatten(1) == self.spared).all(dim=1)
        return self.twin(x) + (digit_like & ~spared).float()[:, None]


def run(tmp_path: Path, model: Path, data: Path) -> Report:
    policy = write_policy(tmp_path / "policy.yaml", POLICY)
    spec = ModelSpec(source=str(model), device="cpu")
    options = RunOptions(str(policy), spec, str(data), tmp_path / "report", batch_size=BATCH)
    return run_gate(options)


def test_a_twin_that_agrees_is_reported_with_what_it_agreed_on(tmp_path, digits_cnn_onnx, digits_npz):
    report = run(tmp_path, digits_cnn_onnx, digits_npz)
    assert report.model.gradients == (
        f"available: the ONNX twin, which agrees with the session on the first evaluation batch ({BATCH} samples)"
    )
    assert [check.status for check in report.checks] == ["pass", "pass"]


def test_a_twin_wrong_on_the_evaluation_data_gives_no_gradients(
    tmp_path, monkeypatch: pytest.MonkeyPatch, digits_cnn_onnx, digits_npz
):
    example = next(load_data(str(digits_npz), samples=SAMPLES, seed=SEED).batches(1)).x[0]
    real_build_twin = under_test.build_twin
    monkeypatch.setattr(
        under_test, "build_twin", lambda proto: WrongOnRealDigits(real_build_twin(proto), example)
    )
    loaded = under_test.load_model(
        ModelSpec(str(digits_cnn_onnx)), work_dir=tmp_path / "loaded", example_input=example[None]
    )
    assert loaded.gradient_model is not None  # what loading alone saw: the example input agrees
    assert under_test.load_model(ModelSpec(str(digits_cnn_onnx)), work_dir=tmp_path / "random").gradient_model

    report = run(tmp_path, digits_cnn_onnx, digits_npz)
    assert report.model.gradients.startswith(
        f"the PyTorch twin disagrees with the ONNX Runtime session on the first evaluation batch ({BATCH} samples)"
    )
    accuracy, fgsm = report.checks
    assert accuracy.status == "pass"  # scored by the session, which the twin does not touch
    assert fgsm.status == "error" and "differentiable model" in fgsm.message
    assert "disagrees with the ONNX Runtime session" in fgsm.message
