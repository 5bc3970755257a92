"""The ONNX-to-torch twin: each operator against ONNX Runtime on a one- or two-node graph, plus gradients."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gate.errors import ModelError
from gate.model import build_twin, export_to_onnx, supported_ops
from gate.model.twin import unsupported_ops

RNG = np.random.default_rng(0)


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def ints(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def graph_model(
    nodes: list[onnx.NodeProto],
    x: np.ndarray,
    constants: dict[str, np.ndarray] | None = None,
    opset: int = 20,
) -> onnx.ModelProto:
    """A model with one input ``x``, the given nodes, their other inputs as initializers, output ``y``."""
    initializers = [numpy_helper.from_array(value, name) for name, value in (constants or {}).items()]
    graph = helper.make_graph(
        nodes,
        "op_test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def compare(model: onnx.ModelProto, x: np.ndarray, atol: float = 1e-5) -> None:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"x": x})
    actual = build_twin(model)(torch.from_numpy(x)).detach().numpy()
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64), atol=atol, rtol=1e-5)


def node(op: str, inputs: list[str], output: str = "y", **attrs: Any) -> onnx.NodeProto:
    return helper.make_node(op, inputs, [output], **attrs)


X4 = rand(2, 3, 7, 6)
X2 = rand(4, 6)

CASES: dict[str, tuple[list[onnx.NodeProto], np.ndarray, dict[str, np.ndarray], int]] = {
    "conv-asymmetric-pads-group": (
        [node("Conv", ["x", "w", "b"], pads=[1, 0, 2, 1], strides=[2, 1], group=3)],
        X4,
        {"w": rand(6, 1, 3, 3), "b": rand(6)},
        20,
    ),
    "conv-same-upper-strided": (
        [node("Conv", ["x", "w"], auto_pad="SAME_UPPER", strides=[2, 2])],
        X4,
        {"w": rand(4, 3, 3, 2)},
        20,
    ),
    "conv-transpose": (
        [node("ConvTranspose", ["x", "w", "b"], strides=[2, 2], pads=[1, 0, 0, 1], output_padding=[1, 0])],
        X4,
        {"w": rand(3, 2, 3, 3), "b": rand(2)},
        20,
    ),
    "conv-same-lower": (
        [node("Conv", ["x", "w"], auto_pad="SAME_LOWER", strides=[2, 3])],
        X4,
        {"w": rand(4, 3, 2, 2)},
        20,
    ),
    "conv-dilated": (
        [node("Conv", ["x", "w"], dilations=[2, 1], pads=[2, 1, 2, 1])],
        X4,
        {"w": rand(4, 3, 3, 3)},
        20,
    ),
    "gemm-trans-alpha-beta": (
        [node("Gemm", ["x", "w", "c"], transB=1, alpha=0.5, beta=2.0)],
        X2,
        {"w": rand(5, 6), "c": rand(5)},
        20,
    ),
    "matmul": ([node("MatMul", ["x", "w"])], X2, {"w": rand(6, 3)}, 20),
    "add-sub-mul-div": (
        [
            node("Add", ["x", "a"], "t1"),
            node("Sub", ["t1", "b"], "t2"),
            node("Mul", ["t2", "a"], "t3"),
            node("Div", ["t3", "c"]),
        ],
        X2,
        {"a": rand(6), "b": rand(4, 1), "c": np.full((6,), 1.5, np.float32)},
        20,
    ),
    "pow-sqrt-abs": (
        [node("Abs", ["x"], "a"), node("Sqrt", ["a"], "s"), node("Pow", ["s", "p"])],
        X2,
        {"p": np.array(3.0, np.float32)},
        20,
    ),
    "relu-leaky-sigmoid-tanh": (
        [
            node("Relu", ["x"], "a"),
            node("LeakyRelu", ["x"], "b", alpha=0.2),
            node("Sigmoid", ["a"], "c"),
            node("Tanh", ["b"], "d"),
            node("Add", ["c", "d"]),
        ],
        X2,
        {},
        20,
    ),
    "gelu-erf": (
        [node("Gelu", ["x"], "g"), node("Erf", ["g"], "e"), node("Gelu", ["e"], approximate="tanh")],
        X2,
        {},
        20,
    ),
    "softmax": ([node("Softmax", ["x"], axis=1)], X4, {}, 13),
    "softmax-opset11-coerced": ([node("Softmax", ["x"], axis=1)], X4, {}, 11),
    "log-softmax": ([node("LogSoftmax", ["x"])], X2, {}, 20),
    "max-pool-pads": (
        [node("MaxPool", ["x"], kernel_shape=[3, 2], pads=[1, 0, 1, 1], strides=[2, 2])],
        X4,
        {},
        20,
    ),
    "max-pool-ceil": ([node("MaxPool", ["x"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)], X4, {}, 20),
    "average-pool-exclude-pad": (
        [node("AveragePool", ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])],
        X4,
        {},
        20,
    ),
    "average-pool-include-pad": (
        [node("AveragePool", ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)],
        X4,
        {},
        20,
    ),
    "global-pools": (
        [node("GlobalAveragePool", ["x"], "a"), node("GlobalMaxPool", ["x"], "b"), node("Add", ["a", "b"])],
        X4,
        {},
        20,
    ),
    "batch-norm": (
        [node("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3)],
        X4,
        {"s": rand(3), "b": rand(3), "m": rand(3), "v": np.abs(rand(3)) + 0.5},
        20,
    ),
    "instance-norm": ([node("InstanceNormalization", ["x", "s", "b"])], X4, {"s": rand(3), "b": rand(3)}, 20),
    "layer-norm": (
        [node("LayerNormalization", ["x", "s", "b"], axis=-2)],
        X4,
        {"s": rand(7, 6), "b": rand(7, 6)},
        20,
    ),
    "flatten-axis2": ([node("Flatten", ["x"], axis=2)], X4, {}, 20),
    "reshape-zero-and-minus-one": ([node("Reshape", ["x", "s"])], X4, {"s": ints(0, -1, 6)}, 20),
    "transpose": ([node("Transpose", ["x"], perm=[0, 2, 3, 1])], X4, {}, 20),
    "concat-identity-dropout": (
        [node("Identity", ["x"], "i"), node("Dropout", ["i"], "d"), node("Concat", ["d", "c"], axis=1)],
        X4,
        {"c": rand(2, 1, 7, 6)},
        20,
    ),
    "constant-and-constant-of-shape": (
        [
            helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(rand(6))),
            node("Shape", ["x"], "s"),
            node("ConstantOfShape", ["s"], "z", value=numpy_helper.from_array(np.array([2.0], np.float32))),
            node("Add", ["x", "k"], "a"),
            node("Mul", ["a", "z"]),
        ],
        X2,
        {},
        20,
    ),
    "dynamic-reshape-chain": (
        [
            node("Shape", ["x"], "s"),
            node("Gather", ["s", "zero"], "n", axis=0),
            node("Unsqueeze", ["n", "ax"], "u"),
            node("Concat", ["u", "minus1"], "shape", axis=0),
            node("Reshape", ["x", "shape"]),
        ],
        X4,
        {"zero": np.array(0, np.int64), "ax": ints(0), "minus1": ints(-1)},
        20,
    ),
    "gather-negative-indices": (
        [node("Gather", ["x", "i"], axis=3)],
        X4,
        {"i": ints(-1, 0, 2).reshape(3, 1)},
        20,
    ),
    "squeeze-unsqueeze-inputs": (
        [node("Unsqueeze", ["x", "a"], "u"), node("Squeeze", ["u", "a"])],
        X4,
        {"a": ints(1, -1)},
        13,
    ),
    "squeeze-unsqueeze-attrs": (
        [node("Unsqueeze", ["x"], "u", axes=[0]), node("Squeeze", ["u"], axes=[0])],
        X4,
        {},
        11,
    ),
    "slice-negative-step": (
        [node("Slice", ["x", "st", "en", "ax", "sp"])],
        X4,
        {"st": ints(-1, 1), "en": ints(-1000, 9223372036854775807), "ax": ints(2, 3), "sp": ints(-2, 2)},
        20,
    ),
    "reduce-mean-axes-input": ([node("ReduceMean", ["x", "a"], keepdims=0)], X4, {"a": ints(2, 3)}, 18),
    "reduce-mean-axes-attr": ([node("ReduceMean", ["x"], axes=[1], keepdims=1)], X4, {}, 13),
    "reduce-sum-max-min": (
        [
            node("ReduceSum", ["x", "a"], "s"),
            node("ReduceMax", ["x", "a"], "m"),
            node("ReduceMin", ["x", "a"], "n"),
            node("Sum", ["s", "m", "n"]),
        ],
        X4,
        {"a": ints(-1)},
        18,
    ),
    "pad-constant": (
        [node("Pad", ["x", "p", "v"])],
        X4,
        {"p": ints(0, 0, 1, 2, 0, 0, 2, 1), "v": np.array(0.5, np.float32)},
        20,
    ),
    "pad-reflect": ([node("Pad", ["x", "p"], mode="reflect")], X4, {"p": ints(0, 0, 1, 2, 0, 0, 2, 1)}, 20),
    "pad-edge": ([node("Pad", ["x", "p"], mode="edge")], X4, {"p": ints(0, 0, 1, 0, 0, 0, 0, 3)}, 20),
    "clip-min-only": ([node("Clip", ["x", "lo"])], X2, {"lo": np.array(-0.2, np.float32)}, 13),
    "clip-attrs": ([node("Clip", ["x"], min=-0.5, max=0.25)], X2, {}, 6),
    "cast-roundtrip": (
        [node("Cast", ["x"], "d", to=TensorProto.DOUBLE), node("Cast", ["d"], to=TensorProto.FLOAT)],
        X2,
        {},
        20,
    ),
    "expand-tile-where-max": (
        [
            node("Expand", ["x", "shape"], "e"),
            node("Tile", ["e", "reps"], "t"),
            node("Greater", ["t", "zero"], "g"),
            node("Where", ["g", "t", "zero"], "w"),
            node("Max", ["w", "t"]),
        ],
        rand(1, 6),
        {"shape": ints(3, 1), "reps": ints(1, 2), "zero": np.zeros(1, np.float32)},
        20,
    ),
    "more-activations": (
        [
            node("Elu", ["x"], "a", alpha=0.5),
            node("HardSigmoid", ["x"], "b"),
            node("HardSwish", ["x"], "c"),
            node("Softplus", ["x"], "d"),
            node("Sum", ["a", "b", "c", "d"]),
        ],
        X2,
        {},
        20,
    ),
    "unary-math": (
        [
            node("Abs", ["x"], "a"),
            node("Add", ["a", "half"], "p"),
            node("Log", ["p"], "l"),
            node("Exp", ["x"], "e"),
            node("Neg", ["e"], "n"),
            node("Reciprocal", ["p"], "r"),
            node("Sign", ["x"], "s"),
            node("Floor", ["x"], "f"),
            node("Ceil", ["x"], "c"),
            node("Sum", ["l", "n", "r", "s", "f", "c"]),
        ],
        X2,
        {"half": np.array(0.5, np.float32)},
        20,
    ),
    "more-reductions": (
        [
            node("ReduceL2", ["x", "a"], "l"),
            node("ReduceSumSquare", ["x", "a"], "s"),
            node("ReduceProd", ["x", "a"], "p"),
            node("Sum", ["l", "s", "p"]),
        ],
        X4,
        {"a": ints(1, 3)},
        18,
    ),
    "comparisons-and-logic": (
        [
            node("Less", ["x", "zero"], "a"),
            node("Floor", ["x"], "f"),
            node("Equal", ["f", "zero"], "b"),
            node("Or", ["a", "b"], "c"),
            node("Not", ["c"], "d"),
            node("GreaterOrEqual", ["x", "zero"], "g"),
            node("And", ["d", "g"], "e"),
            node("Min", ["x", "zero"], "m"),
            node("LessOrEqual", ["x", "zero"], "le"),
            node("Where", ["le", "m", "x"], "w"),
            node("Where", ["e", "x", "w"]),
        ],
        X2,
        {"zero": np.zeros(1, np.float32)},
        20,
    ),
    "argmax-argmin-size-range-castlike": (
        [
            node("ArgMax", ["x"], "i", axis=1),
            node("ArgMin", ["x"], "j", axis=1, keepdims=0),
            node("Size", ["x"], "n"),
            node("Range", ["start", "limit", "delta"], "r"),
            node("CastLike", ["i", "x"], "fi"),
            node("CastLike", ["j", "x"], "fj"),
            node("CastLike", ["n", "x"], "fn"),
            node("CastLike", ["r", "x"], "fr"),
            node("Add", ["x", "fi"], "s1"),
            node("Add", ["s1", "fn"], "s2"),
            node("Add", ["s2", "fr"], "s3"),
            node("Unsqueeze", ["fj", "one"], "uj"),
            node("Add", ["s3", "uj"]),
        ],
        X2,
        {
            "start": np.array(0, np.int64),
            "limit": np.array(6, np.int64),
            "delta": np.array(1, np.int64),
            "one": ints(1),
        },
        20,
    ),
    "resize-nearest-asymmetric-floor": (
        [
            node(
                "Resize",
                ["x", "", "s"],
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            )
        ],
        X4,
        {"s": np.array([1, 1, 2, 1.5], np.float32)},
        19,
    ),
    "resize-nearest-half-pixel-ceil": (
        [
            node(
                "Resize",
                ["x", "", "", "z"],
                mode="nearest",
                coordinate_transformation_mode="half_pixel",
                nearest_mode="round_prefer_ceil",
            )
        ],
        X4,
        {"z": ints(2, 3, 10, 4)},
        19,
    ),
    "resize-linear-half-pixel": (
        [node("Resize", ["x", "", "s"], mode="linear")],
        X4,
        {"s": np.array([1, 1, 2, 2], np.float32)},
        19,
    ),
    "resize-linear-align-corners-sizes": (
        [node("Resize", ["x", "", "", "z"], mode="linear", coordinate_transformation_mode="align_corners")],
        X4,
        {"z": ints(2, 3, 5, 11)},
        19,
    ),
    "resize-cubic": (
        [node("Resize", ["x", "", "s"], mode="cubic")],
        X4,
        {"s": np.array([1, 1, 2, 2], np.float32)},
        19,
    ),
    "split-num-outputs": (
        [helper.make_node("Split", ["x"], ["a", "b"], axis=1, num_outputs=2), node("Sub", ["a", "b"])],
        X2,
        {},
        18,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_onnx_runtime(case: str) -> None:
    nodes, x, constants, opset = CASES[case]
    compare(graph_model(nodes, x, constants, opset), x)


def test_every_case_op_is_in_the_supported_set() -> None:
    used = {n.op_type for nodes, *_ in CASES.values() for n in nodes}
    assert used <= set(supported_ops())


def test_an_unsupported_resize_variant_is_named() -> None:
    resize = node(
        "Resize", ["x", "", "s"], mode="nearest", coordinate_transformation_mode="tf_crop_and_resize"
    )
    model = graph_model([resize], X4, {"s": np.array([1, 1, 2, 2], np.float32)}, 19)
    with pytest.raises(ModelError, match="Resize with mode=nearest, coordinate_transformation_mode=tf_crop"):
        build_twin(model)(torch.from_numpy(X4))


def test_unsupported_op_is_named() -> None:
    model = graph_model([node("Hardmax", ["x"])], X2)
    assert unsupported_ops(model) == ["Hardmax"]
    with pytest.raises(ModelError, match="does not implement: Hardmax"):
        build_twin(model)


def test_custom_domain_counts_as_unsupported() -> None:
    model = graph_model([helper.make_node("Gelu", ["x"], ["y"], domain="com.microsoft")], X2)
    assert unsupported_ops(model) == ["com.microsoft::Gelu"]


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_twin_gradient_matches_the_source(tmp_path, digits_cnn, digits_split, exporter) -> None:
    x = torch.from_numpy(digits_split["x_test"][:32])
    y = torch.from_numpy(digits_split["y_test"][:32])
    info = export_to_onnx(digits_cnn, x, tmp_path / "cnn.onnx", exporter=exporter)
    twin = build_twin(onnx.load(str(info.path)))

    def input_gradient(module: torch.nn.Module) -> torch.Tensor:
        xg = x.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(module(xg), y).backward()
        return xg.grad

    torch.testing.assert_close(input_gradient(twin), input_gradient(digits_cnn), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("factory", ["make_mobile", "make_transformer"])
def test_twin_of_dynamo_exported_architectures(tmp_path, factories, factory) -> None:
    """Whole graphs as the dynamo exporter writes them: values against ORT, gradients against the source."""
    import model_factories

    source = getattr(model_factories, factory)()
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    path = export_to_onnx(source, x, tmp_path / "model.onnx").path
    twin = build_twin(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(twin(x).detach(), torch.from_numpy(expected), atol=1e-5, rtol=1e-4)

    def input_gradient(module: torch.nn.Module) -> torch.Tensor:
        xg = x.clone().requires_grad_(True)
        module(xg).logsumexp(1).sum().backward()
        return xg.grad

    torch.testing.assert_close(input_gradient(twin), input_gradient(source), atol=1e-5, rtol=1e-4)
