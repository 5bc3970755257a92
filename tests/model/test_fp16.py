"""Half-precision ONNX models: fp16 weights behind float32 I/O, and fp16 I/O cast at the boundary."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from conftest import write_policy
from torch import nn

from gate.cli import main
from gate.model import ModelSpec, export_to_onnx, load_model
from gate.model.under_test import TWIN_ATOL, TWIN_RTOL, graph_precision


class HalfInside(nn.Module):
    """float32 in and out, half precision inside (as onnxconverter's keep_io_types=True writes it)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = copy.deepcopy(inner).half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.half()).float()


def deep_cnn() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(1, 32, 3, padding=1), nn.ReLU()]
    for _ in range(5):
        layers += [nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(32 * 8 * 8, 10)).eval()
    for layer in net:  # He initialisation keeps activations (and rounding errors) at the scale of real logits
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    return net


@pytest.fixture(scope="module")
def half_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fp16")
    inner = deep_cnn()
    x = torch.rand(2, 1, 8, 8)
    inside = export_to_onnx(HalfInside(inner).eval(), x, folder / "inside.onnx").path
    io = export_to_onnx(copy.deepcopy(inner).half().eval(), x.half(), folder / "io.onnx").path
    return folder, inner, inside, io


def test_the_graphs_precision_is_read_from_weights_inputs_and_casts(half_models, digits_cnn_onnx):
    _, _, inside, io = half_models
    assert graph_precision(onnx.load(str(inside))) == "float16"
    assert graph_precision(onnx.load(str(io))) == "float16"
    assert graph_precision(onnx.load(str(digits_cnn_onnx))) == "float32"


def test_fp16_weights_keep_their_twin_compared_in_half_precision(half_models):
    folder, _, inside, _ = half_models
    model = load_model(ModelSpec(str(inside)), work_dir=folder)
    assert model.precision == "float16"
    assert model.gradient_model is not None, model.gradient_unavailable_reason
    assert "compared in float16" in model.twin_agreement
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    difference = (model.gradient_model(x) - model.scores(x)).abs()
    # The reason for the scaled tolerance: half-precision kernels differ by more than float32's.
    assert float((difference - (TWIN_ATOL + TWIN_RTOL * model.scores(x).abs())).max()) > 0
    model.verify_twin(x, on="64 inputs")
    assert model.gradient_model is not None
    strict = load_model(ModelSpec(str(inside)), work_dir=folder)
    strict.verify_twin(x, on="64 inputs", atol=TWIN_ATOL, rtol=TWIN_RTOL)
    assert strict.gradient_model is None and "tolerance 0.0001" in strict.gradient_unavailable_reason
    assert "for a graph computing in float16" in strict.gradient_unavailable_reason


def test_fp16_inputs_and_outputs_are_cast_at_the_boundary(half_models):
    folder, _, _, io = half_models
    model = load_model(ModelSpec(str(io)), work_dir=folder)
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    session = ort.InferenceSession(str(io), providers=["CPUExecutionProvider"])
    (independent,) = session.run(None, {session.get_inputs()[0].name: x.numpy().astype(np.float16)})
    scores = model.scores(x)
    assert scores.dtype == torch.float32
    torch.testing.assert_close(scores, torch.from_numpy(independent.astype(np.float32)))
    logits = model.require_gradient_model()(x.requires_grad_(True))
    assert logits.dtype == torch.float32
    (gradient,) = torch.autograd.grad(logits[:, 0].sum(), x)
    assert gradient.dtype == torch.float32 and bool(gradient.abs().sum() > 0)


def test_gate_check_on_a_half_precision_model_matches_onnxruntime(
    tmp_path, digits_cnn, digits_npz, digits_split
):
    path = export_to_onnx(
        copy.deepcopy(digits_cnn).half().eval(), torch.rand(2, 1, 8, 8).half(), tmp_path / "h.onnx"
    )
    policy = write_policy(
        tmp_path / "policy.yaml",
        """
        version: 1
        name: half
        checks:
          - {id: clean, kind: accuracy, min: 0.5}
          - {id: pgd, kind: adversarial, attack: pgd, epsilon: 0.1, steps: 10, min: 0.0}
        """,
    )
    report_dir = tmp_path / "report"
    result = CliRunner().invoke(
        main,
        ["check", "--policy", str(policy), "--model", str(path.path), "--data", str(digits_npz),
         "--report-dir", str(report_dir)],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    checks = {c["id"]: c for c in json.loads((report_dir / "report.json").read_text())["checks"]}
    session = ort.InferenceSession(str(path.path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: digits_split["x_test"].astype(np.float16)})
    independent = float((logits.argmax(1) == digits_split["y_test"]).mean())
    assert checks["clean"]["value"] == pytest.approx(independent, abs=1e-12)
    assert checks["pgd"]["status"] == "pass" and checks["pgd"]["value"] < independent
