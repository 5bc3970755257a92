"""The twin's ai.onnx.ml operators against ONNX Runtime, the graph pruning, and logits behind them."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gate.errors import ModelError
from gate.model import build_twin, supported_ops
from gate.model.outputs import graph_for_value
from gate.model.squashing import LogProbabilities, graph_logits, probability_evidence

RNG = np.random.default_rng(0)
X = RNG.standard_normal((7, 4)).astype(np.float32)
X[3] = 0  # a zero row: the Normalizer leaves it as it is
COEFFICIENTS = RNG.standard_normal(12).astype(np.float32).tolist()


def ml_model(nodes: list[onnx.NodeProto], outputs: list[tuple[str, int]], constants=None) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "ml_test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info(name, kind, None) for name, kind in outputs],
        [numpy_helper.from_array(value, name) for name, value in (constants or {}).items()],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model


def session_outputs(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x}), strict=True))


def classifier(rows: int, transform: str, labels: list[int] | None = None) -> onnx.ModelProto:
    labels = labels if labels is not None else list(range(max(rows, 2)))
    node = helper.make_node(
        "LinearClassifier",
        ["x"],
        ["label", "scores"],
        domain="ai.onnx.ml",
        coefficients=COEFFICIENTS[: rows * 4],
        intercepts=RNG.standard_normal(rows).astype(np.float32).tolist(),
        classlabels_ints=labels,
        post_transform=transform,
    )
    return ml_model([node], [("label", TensorProto.INT64), ("scores", TensorProto.FLOAT)])


@pytest.mark.parametrize("transform", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"])
@pytest.mark.parametrize("rows", [1, 2, 3])
def test_linear_classifier_matches_onnxruntime(rows, transform) -> None:
    model = classifier(rows, transform, labels=[4, 9] if rows == 1 else None)
    expected = session_outputs(model, X)
    twin = build_twin(graph_for_value(model, "scores"))
    np.testing.assert_allclose(twin(torch.from_numpy(X)).numpy(), expected["scores"], atol=1e-6, rtol=1e-5)
    label_twin = build_twin(graph_for_value(model, "label"))
    np.testing.assert_array_equal(label_twin(torch.from_numpy(X)).numpy(), expected["label"])


@pytest.mark.parametrize(
    ("op", "attrs"),
    [
        ("Normalizer", {"norm": "MAX"}),
        ("Normalizer", {"norm": "L1"}),
        ("Normalizer", {"norm": "L2"}),
        ("Scaler", {"offset": [0.5, -1.0, 0.0, 2.0], "scale": [2.0, 0.5, 1.0, -1.0]}),
        ("Scaler", {"offset": [0.25], "scale": [3.0]}),
    ],
)
def test_normalizer_and_scaler_match_onnxruntime_and_have_gradients(op: str, attrs: dict[str, Any]) -> None:
    model = ml_model(
        [helper.make_node(op, ["x"], ["y"], domain="ai.onnx.ml", **attrs)], [("y", TensorProto.FLOAT)]
    )
    expected = session_outputs(model, X)["y"]
    x = torch.from_numpy(X).requires_grad_(True)
    out = build_twin(model)(x)
    np.testing.assert_allclose(out.detach().numpy(), expected, atol=1e-6, rtol=1e-5)
    (gradient,) = torch.autograd.grad(out[:, 0].sum(), x)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0


def test_the_ml_operators_are_listed() -> None:
    listed = supported_ops()
    assert {"ai.onnx.ml::LinearClassifier", "ai.onnx.ml::Normalizer", "ai.onnx.ml::Scaler"} <= set(listed)


def test_pruning_keeps_only_what_the_value_needs() -> None:
    """The label path's ArrayFeatureExtractor has no twin; the probabilities do not need it."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["z"]),
        helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["index"], axis=1),
        helper.make_node("ArrayFeatureExtractor", ["classes", "index"], ["label"], domain="ai.onnx.ml"),
    ]
    constants = {"w": RNG.standard_normal((4, 3)).astype(np.float32), "classes": np.arange(3, dtype=np.int64)}
    model = ml_model(nodes, [("label", TensorProto.INT64), ("probabilities", TensorProto.FLOAT)], constants)
    with pytest.raises(ModelError, match="ArrayFeatureExtractor"):
        build_twin(model)
    pruned = graph_for_value(model, "probabilities")
    assert [n.op_type for n in pruned.graph.node] == ["MatMul", "Softmax"]
    assert [t.name for t in pruned.graph.initializer] == ["w"]
    assert [o.name for o in pruned.graph.output] == ["probabilities"]
    expected = session_outputs(model, X)["probabilities"]
    np.testing.assert_allclose(build_twin(pruned)(torch.from_numpy(X)).numpy(), expected, atol=1e-6)
    found = graph_logits(pruned, "probabilities")
    assert found is not None and found.squashing == "softmax"
    assert probability_evidence(pruned, "probabilities") == "a final Softmax"


@pytest.mark.parametrize(("rows", "transform"), [(3, "SOFTMAX"), (2, "LOGISTIC"), (1, "LOGISTIC")])
def test_linear_classifier_logits_are_its_raw_scores(rows, transform) -> None:
    whole = classifier(rows, transform, labels=[0, 1] if rows == 1 else None)
    model = graph_for_value(whole, "scores")
    found = graph_logits(model, "scores")
    assert found is not None and found.build is not None
    logits = found.build(build_twin(model))(torch.from_numpy(X))
    expected = torch.from_numpy(session_outputs(whole, X)["scores"])
    squash = torch.sigmoid if found.squashing == "sigmoid" else lambda z: torch.softmax(z, dim=1)
    torch.testing.assert_close(squash(logits), expected, atol=1e-6, rtol=1e-5)
    assert probability_evidence(model, "scores") == f"a LinearClassifier with post_transform {transform}"


def test_a_one_row_binary_classifier_without_logistic_is_not_probabilities() -> None:
    """ONNX Runtime returns [1 - s, s] of the raw score then, whatever else the post_transform says."""
    model = graph_for_value(classifier(1, "SOFTMAX", labels=[0, 1]), "scores")
    assert graph_logits(model, "scores") is None and probability_evidence(model, "scores") is None


def test_log_probabilities_keep_the_order_and_stay_finite() -> None:
    probabilities = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    logs = LogProbabilities(torch.nn.Identity())(probabilities)
    assert torch.isfinite(logs).all() and torch.equal(logs.argmax(1), probabilities.argmax(1))
