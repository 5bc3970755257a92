"""Running one policy through the library (no CLI) and reading back one check's result."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gate.model import ModelSpec
from gate.report.model import CheckResult, Report
from gate.runner import RunOptions, run_gate


@pytest.fixture()
def gate_run(tmp_path: Path):
    """``gate_run(policy_yaml, model_path, data_path) -> Report``; the policy text is dedented."""

    def run(policy: str, model: Path, data: Path, **options) -> Report:
        policy_path = tmp_path / "policy.yaml"
        policy_path.write_text(textwrap.dedent(policy).lstrip(), encoding="utf-8")
        return run_gate(
            RunOptions(
                policy=str(policy_path),
                model=ModelSpec(source=str(model), device="cpu"),
                data=str(data),
                report_dir=tmp_path / "report",
                **options,
            )
        )

    return run


def only_check(report: Report) -> CheckResult:
    (check,) = report.checks
    return check


@pytest.fixture(scope="session")
def standard_weights(tmp_path_factory: pytest.TempPathFactory, digits_cnn) -> Path:
    """The standard digits CNN's weights, for the factory ``gate.demo.models:digits_cnn``."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("weights") / "standard.safetensors"
    save_file(digits_cnn.state_dict(), str(path))
    return path


@pytest.fixture(scope="session")
def robust_weights(tmp_path_factory: pytest.TempPathFactory, robust_digits_cnn) -> Path:
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("weights") / "robust.safetensors"
    save_file(robust_digits_cnn.state_dict(), str(path))
    return path


@pytest.fixture(scope="session")
def masked_weights(tmp_path_factory: pytest.TempPathFactory, digits_cnn) -> Path:
    """The standard CNN's weights inside the input-quantising wrapper of masked_models.py."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("weights") / "masked.safetensors"
    save_file({f"net.{key}": value for key, value in digits_cnn.state_dict().items()}, str(path))
    return path


@pytest.fixture()
def factory_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``factory_run(policy_yaml, "module:factory", weights, data) -> Report`` for PyTorch-source models."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))

    def run(policy: str, factory: str, weights: Path, data: Path, **options) -> Report:
        policy_path = tmp_path / "policy.yaml"
        policy_path.write_text(textwrap.dedent(policy).lstrip(), encoding="utf-8")
        return run_gate(
            RunOptions(
                policy=str(policy_path),
                model=ModelSpec(source=factory, weights=weights, input_shape=(1, 8, 8), device="cpu"),
                data=str(data),
                report_dir=tmp_path / "report",
                **options,
            )
        )

    return run


@pytest.fixture(scope="session")
def sigmoid_digits_cnn_onnx(tmp_path_factory: pytest.TempPathFactory, digits_cnn) -> Path:
    """The standard digits CNN with a per-class sigmoid head, exported to ONNX: its probabilities saturate
    (a quarter of the held-out samples have a logit above 17, whose float32 sigmoid is exactly 1)."""
    import torch
    from torch import nn

    from gate.model import export_to_onnx

    path = tmp_path_factory.mktemp("onnx") / "sigmoid_digits_cnn.onnx"
    export_to_onnx(nn.Sequential(digits_cnn, nn.Sigmoid()).eval(), torch.zeros(2, 1, 8, 8), path)
    return path


@pytest.fixture(scope="session")
def hardsigmoid_digits_cnn_onnx(tmp_path_factory: pytest.TempPathFactory, digits_cnn) -> Path:
    """The digits CNN squashed by a HardSigmoid: outputs in [0, 1] that gate cannot trace back to logits."""
    import torch
    from torch import nn

    from gate.model import export_to_onnx

    path = tmp_path_factory.mktemp("onnx") / "hardsigmoid_digits_cnn.onnx"
    export_to_onnx(nn.Sequential(digits_cnn, nn.Hardsigmoid()).eval(), torch.zeros(2, 1, 8, 8), path)
    return path
