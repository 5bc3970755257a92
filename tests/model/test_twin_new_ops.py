"""The twin's activations, NaN/Inf tests, GatherND and depth/space moves against ONNX Runtime, with gradients."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gate.model import build_twin, export_to_onnx, supported_ops

RNG = np.random.default_rng(22)


def rand(*shape: int) -> np.ndarray:
    return (2 * RNG.standard_normal(shape)).astype(np.float32)


def one_node_model(
    op: str,
    x: np.ndarray,
    attrs: dict[str, Any] | None = None,
    constants: dict[str, np.ndarray] | None = None,
    output_type: int = TensorProto.FLOAT,
    opset: int = 18,
) -> onnx.ModelProto:
    """``y = op(x, *constants)`` with the constants as initializers."""
    constants = constants or {}
    node = helper.make_node(op, ["x", *constants], ["y"], **(attrs or {}))
    graph = helper.make_graph(
        [node],
        "new_op_test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", output_type, None)],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def onnxruntime_output(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def assert_gradient_flows(model: onnx.ModelProto, x: np.ndarray) -> None:
    xg = torch.from_numpy(x).requires_grad_(True)
    build_twin(model)(xg).square().sum().backward()
    assert xg.grad is not None
    assert torch.isfinite(xg.grad).all()
    assert xg.grad.abs().sum() > 0


X = rand(3, 4, 5)
# Near the thresholds of Shrink and ThresholdedRelu too, and with a large value that would overflow exp.
X[0, 0, :4] = [0.5, -0.5, 1.0, 100.0]

ACTIVATIONS: dict[str, tuple[str, dict[str, Any], dict[str, np.ndarray]]] = {
    "selu": ("Selu", {}, {}),
    "selu-alpha-gamma": ("Selu", {"alpha": 2.0, "gamma": 0.5}, {}),
    "elu-alpha": ("Elu", {"alpha": 0.7}, {}),
    "celu": ("Celu", {}, {}),
    "celu-alpha": ("Celu", {"alpha": 0.3}, {}),
    "mish": ("Mish", {}, {}),
    "softsign": ("Softsign", {}, {}),
    "softplus": ("Softplus", {}, {}),
    "hard-sigmoid": ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, {}),
    "hard-swish": ("HardSwish", {}, {}),
    "thresholded-relu": ("ThresholdedRelu", {}, {}),
    "thresholded-relu-alpha": ("ThresholdedRelu", {"alpha": 0.25}, {}),
    "shrink": ("Shrink", {}, {}),
    "shrink-bias-lambd": ("Shrink", {"bias": 0.3, "lambd": 1.0}, {}),
    "prelu-scalar": ("PRelu", {}, {"slope": np.array([0.2], np.float32)}),
    "prelu-per-channel": ("PRelu", {}, {"slope": rand(4, 1)}),
    "prelu-last-axis": ("PRelu", {}, {"slope": rand(5)}),
    "prelu-full": ("PRelu", {}, {"slope": rand(3, 4, 5)}),
}


@pytest.mark.parametrize("case", sorted(ACTIVATIONS))
def test_activation_matches_onnxruntime_and_has_gradients(case: str) -> None:
    op, attrs, constants = ACTIVATIONS[case]
    model = one_node_model(op, X, attrs, constants)
    expected = onnxruntime_output(model, X)
    actual = build_twin(model)(torch.from_numpy(X)).detach().numpy()
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5)
    assert_gradient_flows(model, X)


SPECIAL = rand(2, 6)
SPECIAL[0, :3] = [np.nan, np.inf, -np.inf]
SPECIAL[1, 4:] = [-np.inf, np.nan]


@pytest.mark.parametrize(
    ("op", "attrs"),
    [
        ("IsNaN", {}),
        ("IsInf", {}),
        ("IsInf", {"detect_negative": 0}),
        ("IsInf", {"detect_positive": 0}),
        ("IsInf", {"detect_negative": 0, "detect_positive": 0}),
    ],
)
def test_nan_and_inf_tests_match_onnxruntime_exactly(op: str, attrs: dict[str, Any]) -> None:
    model = one_node_model(op, SPECIAL, attrs, output_type=TensorProto.BOOL)
    expected = onnxruntime_output(model, SPECIAL)
    actual = build_twin(model)(torch.from_numpy(SPECIAL)).numpy()
    assert actual.dtype == np.bool_
    np.testing.assert_array_equal(actual, expected)


DATA = rand(2, 3, 4, 5)

GATHER_ND: dict[str, tuple[np.ndarray, int]] = {
    "whole-slices": (np.array([[1, 2], [0, -1]], np.int64).reshape(2, 1, 2), 0),
    "single-elements": (np.array([[0, 2, 3, 4], [1, -3, 0, 1], [1, 1, 1, 1]], np.int64), 0),
    "first-axis": (np.array([[1], [0], [1]], np.int64), 0),
    "batch-dims-1": (np.array([[[2], [0]], [[1], [-1]]], np.int64), 1),
    "batch-dims-1-depth-2": (np.array([[[2, 3]], [[0, -1]]], np.int64), 1),
    "batch-dims-2": (RNG.integers(0, 4, (2, 3, 6, 1)).astype(np.int64), 2),
}


@pytest.mark.parametrize("case", sorted(GATHER_ND))
def test_gather_nd_matches_onnxruntime_and_has_gradients(case: str) -> None:
    indices, batch_dims = GATHER_ND[case]
    model = one_node_model("GatherND", DATA, {"batch_dims": batch_dims}, {"indices": indices})
    expected = onnxruntime_output(model, DATA)
    actual = build_twin(model)(torch.from_numpy(DATA)).detach().numpy()
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)
    assert_gradient_flows(model, DATA)


@pytest.mark.parametrize(
    ("op", "attrs", "x"),
    [
        ("DepthToSpace", {"blocksize": 2}, rand(2, 12, 3, 4)),
        ("DepthToSpace", {"blocksize": 2, "mode": "DCR"}, rand(1, 8, 2, 3)),
        ("DepthToSpace", {"blocksize": 2, "mode": "CRD"}, rand(2, 12, 3, 4)),
        ("DepthToSpace", {"blocksize": 3, "mode": "CRD"}, rand(1, 18, 2, 2)),
        ("SpaceToDepth", {"blocksize": 2}, rand(2, 3, 4, 6)),
        ("SpaceToDepth", {"blocksize": 3}, rand(1, 2, 6, 3)),
    ],
)
def test_depth_and_space_moves_match_onnxruntime(op: str, attrs: dict[str, Any], x: np.ndarray) -> None:
    model = one_node_model(op, x, attrs)
    expected = onnxruntime_output(model, x)
    actual = build_twin(model)(torch.from_numpy(x)).detach().numpy()
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)
    assert_gradient_flows(model, x)


def test_the_new_ops_are_in_the_supported_set() -> None:
    new = {"IsNaN", "IsInf", "GatherND", "PRelu", "Selu", "Mish", "DepthToSpace", "SpaceToDepth"}
    new |= {"Celu", "ThresholdedRelu", "Softsign", "Shrink"}
    assert new <= set(supported_ops())


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_exported_pixel_shuffle_and_prelu_network(tmp_path, exporter: str) -> None:
    """PixelShuffle exports as DepthToSpace (CRD) and PReLU as PRelu; the twin runs the whole graph."""
    torch.manual_seed(0)
    source = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.PixelShuffle(2),
        torch.nn.PReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(1 * 8 * 8, 3),
    )
    with torch.no_grad():
        source[2].weight.fill_(0.1)
    x = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    path = export_to_onnx(source, x, tmp_path / "shuffle.onnx", exporter=exporter).path
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert {"DepthToSpace", "PRelu"} <= ops, ops
    twin = build_twin(model)
    expected = onnxruntime_output(model, x.numpy())
    torch.testing.assert_close(twin(x).detach(), torch.from_numpy(expected), atol=1e-5, rtol=1e-4)

    def input_gradient(module: torch.nn.Module) -> torch.Tensor:
        xg = x.clone().requires_grad_(True)
        module(xg).logsumexp(1).sum().backward()
        return xg.grad

    torch.testing.assert_close(input_gradient(twin), input_gradient(source), atol=1e-5, rtol=1e-4)
