"""The straight-through (BPDA) twin on exported models that hide their gradient, and the new ops it needs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from gate.model import build_twin, export_to_onnx, supported_ops
from gate.model.twin.straight_through import NON_DIFFERENTIABLE, non_differentiable_ops

RNG = np.random.default_rng(21)
SHAPE = (1, 8, 8)


class Net(nn.Module):
    """A small CNN behind an input transform ``pre`` (a quantiser, a binariser …)."""

    def __init__(self, pre: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.pre = pre
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre is not None:
            x = self.pre(x)
        return self.fc(torch.relu(self.conv(x)).flatten(1))


# name -> (input transform, what non_differentiable_ops reports, d(transform)/dx under straight-through)
TRANSFORMS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], list[str], float]] = {
    "quantiser": (lambda x: torch.round(x * 16) / 16, ["Round"], 1.0),
    "floor": (lambda x: torch.floor(x * 8) / 8, ["Floor"], 1.0),
    "sign": (lambda x: torch.sign(x - 0.5), ["Sign"], 1.0),
    "binariser": (lambda x: (x > 0.5).float(), ["Greater"], 1.0),
    "select": (lambda x: torch.where(x < 0.5, -1.0, 1.0), ["Less"], 2.0),
    "cast-uint8": (lambda x: (x * 255).to(torch.uint8).float() / 255, ["Cast to uint8"], 1.0),
    "sin": (lambda x: torch.sin(3 * x), [], 0.0),
}


def inputs(count: int = 8) -> torch.Tensor:
    return torch.from_numpy(RNG.random((count, *SHAPE), dtype=np.float32))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """The ONNX file of ``Net(TRANSFORMS[name])`` from ``exporter``, exported once per module."""
    paths: dict[tuple[str, str], Path] = {}

    def export(name: str, exporter: str = "torchscript") -> Path:
        if (name, exporter) not in paths:
            path = tmp_path_factory.mktemp("st") / f"{name}-{exporter}.onnx"
            module = Net(TRANSFORMS[name][0]).eval()
            paths[name, exporter] = export_to_onnx(module, inputs(2), path, exporter=exporter).path
        return paths[name, exporter]

    return export


def session_scores(source: Path | onnx.ModelProto, x: torch.Tensor) -> torch.Tensor:
    serialised = str(source) if isinstance(source, Path) else source.SerializeToString()
    session = ort.InferenceSession(serialised, providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def input_gradient(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """d(sum of the logsumexp of the scores)/dx; zeros where the graph cuts the input off altogether."""
    xg = x.clone().requires_grad_(True)
    out = module(xg).logsumexp(1).sum()
    if not out.requires_grad:
        return torch.zeros_like(x)
    (gradient,) = torch.autograd.grad(out, xg, allow_unused=True)
    return torch.zeros_like(x) if gradient is None else gradient


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_straight_through_twin_matches_the_session(exported, name, exporter) -> None:
    path = exported(name, exporter)
    x = inputs()
    twin = build_twin(onnx.load(str(path)), straight_through=True)
    torch.testing.assert_close(twin(x).detach(), session_scores(path, x), atol=1e-5, rtol=1e-5)
    # The forward is the plain twin's bit for bit: only the backward changes.
    assert torch.equal(twin(x), build_twin(onnx.load(str(path)))(x))


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_non_differentiable_ops_names_the_hiding_step(exported, name, exporter) -> None:
    listed = non_differentiable_ops(onnx.load(str(exported(name, exporter))))
    assert listed == TRANSFORMS[name][1]
    assert all(kind.split()[0] in NON_DIFFERENTIABLE for kind in listed)


@pytest.mark.parametrize("name", sorted(set(TRANSFORMS) - {"sin"}))
def test_straight_through_gradient_is_the_network_gradient_at_the_transformed_input(exported, name) -> None:
    """BPDA with the identity: d/dx net(g(x)) becomes g'·net'(g(x)) with g' the straight-through slope."""
    transform, _, slope = TRANSFORMS[name]
    model = onnx.load(str(exported(name)))
    x = inputs()
    assert input_gradient(build_twin(model), x).abs().sum() == 0
    through = input_gradient(build_twin(model, straight_through=True), x)
    assert through.abs().sum() > 0
    expected = slope * input_gradient(Net(), transform(x))
    torch.testing.assert_close(through, expected, atol=1e-6, rtol=1e-5)


def test_a_differentiable_model_keeps_its_gradient(exported) -> None:
    model = onnx.load(str(exported("sin")))
    x = inputs()
    plain = input_gradient(build_twin(model), x)
    assert plain.abs().sum() > 0
    torch.testing.assert_close(plain, input_gradient(Net(TRANSFORMS["sin"][0]), x), atol=1e-6, rtol=1e-5)
    assert torch.equal(input_gradient(build_twin(model, straight_through=True), x), plain)


def pgd_loss_change(
    model: onnx.ModelProto, path: Path, *, straight_through: bool
) -> tuple[float, float, bool]:
    """A few sign-gradient steps on the cross-entropy of the session's own labels: loss before, after, moved."""
    twin = build_twin(model, straight_through=straight_through)
    x = inputs(32)
    labels = session_scores(path, x).argmax(1)
    eps, step = 0.15, 0.05
    adversarial = x.clone()
    for _ in range(10):
        xg = adversarial.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(twin(xg), labels)
        (gradient,) = torch.autograd.grad(loss, xg, allow_unused=True) if loss.requires_grad else (None,)
        if gradient is None:
            gradient = torch.zeros_like(x)
        adversarial = adversarial + step * gradient.sign()
        adversarial = torch.clamp(torch.min(torch.max(adversarial, x - eps), x + eps), 0.0, 1.0)

    def session_loss(points: torch.Tensor) -> float:
        return float(nn.functional.cross_entropy(session_scores(path, points), labels))

    return session_loss(x), session_loss(adversarial), not torch.equal(adversarial, x)


@pytest.mark.parametrize("name", ["quantiser", "binariser", "cast-uint8"])
def test_pgd_with_the_straight_through_twin_raises_the_session_loss(exported, name) -> None:
    path = exported(name)
    model = onnx.load(str(path))
    before, after, moved = pgd_loss_change(model, path, straight_through=False)
    assert not moved and after == before
    before, after, moved = pgd_loss_change(model, path, straight_through=True)
    assert moved and after > before + 0.1


# Hand-built graphs: quantise-dequantise, shape arithmetic, and a ReLU written as a Where.


def mlp_model(
    nodes: list[onnx.NodeProto], constants: dict[str, np.ndarray], opset: int = 19
) -> onnx.ModelProto:
    """``nodes`` from ``x`` [N, 4] to ``y``, with two MatMul layers after them (``h`` is their input)."""
    # The same layers in every model, so that a model with the transform and one without compare.
    layers_rng = np.random.default_rng(0)
    weights = {
        name: layers_rng.standard_normal(shape).astype(np.float32)
        for name, shape in (("w1", (4, 6)), ("w2", (6, 3)))
    }
    layers = [
        helper.make_node("MatMul", ["h", "w1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["y"]),
    ]
    graph = helper.make_graph(
        [*nodes, *layers],
        "straight_through_test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(value, name) for name, value in {**constants, **weights}.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def qdq_constants(per_axis: bool) -> dict[str, np.ndarray]:
    if per_axis:
        return {
            "scale": np.array([0.02, 0.05, 0.1, 0.03], np.float32),
            "zero": np.array([-3, 0, 5, 10], np.int8),
        }
    return {"scale": np.array(0.04, np.float32), "zero": np.array(100, np.uint8)}


def qdq_model(per_axis: bool) -> onnx.ModelProto:
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"], axis=1),
        helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["h"], axis=1),
    ]
    return mlp_model(nodes, qdq_constants(per_axis))


@pytest.mark.parametrize("per_axis", [False, True], ids=["per-tensor", "per-axis"])
def test_quantize_dequantize_straight_through(per_axis) -> None:
    model = qdq_model(per_axis)
    # Inside the integer range, so the saturation does not cut the gradient.
    x = torch.from_numpy(RNG.uniform(-0.5, 0.5, (16, 4)).astype(np.float32))
    through = build_twin(model, straight_through=True)
    torch.testing.assert_close(through(x).detach(), session_scores(model, x), atol=1e-5, rtol=1e-5)
    assert non_differentiable_ops(model) == ["QuantizeLinear"]
    assert input_gradient(build_twin(model), x).abs().sum() == 0
    # The gradient of the layers alone, at the dequantised input.
    without = mlp_model([helper.make_node("Identity", ["x"], ["h"])], {})
    dequantised = build_twin(qdq_model(per_axis), straight_through=False)(x, output="h").detach()
    expected = input_gradient(build_twin(without), dequantised)
    torch.testing.assert_close(input_gradient(through, x), expected, atol=1e-6, rtol=1e-5)


def test_quantize_saturation_keeps_its_true_zero_gradient() -> None:
    model = qdq_model(per_axis=False)
    # 0.04·(0 - 100) = -4 and 0.04·(255 - 100) = 6.2 bound the representable values.
    x = torch.tensor([[-9.0, 9.0, 0.1, 0.2]])
    xg = x.clone().requires_grad_(True)
    build_twin(model, straight_through=True)(xg, output="h").sum().backward()
    assert xg.grad.tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_shape_arithmetic_is_not_counted_nor_changed() -> None:
    """A CNN whose Resize sizes come from Shape → Cast → Mul → Floor → Cast: nothing on the input's path."""
    nodes = [
        helper.make_node("Conv", ["x", "k"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["c"], ["shape"]),
        helper.make_node("Cast", ["shape"], ["shape_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["shape_f", "factor"], ["scaled"]),
        helper.make_node("Floor", ["scaled"], ["floored"]),
        helper.make_node("Cast", ["floored"], ["sizes"], to=TensorProto.INT64),
        helper.make_node(
            "Resize",
            ["c", "", "", "sizes"],
            ["r"],
            mode="nearest",
            nearest_mode="floor",
            coordinate_transformation_mode="asymmetric",
        ),
        helper.make_node("Relu", ["r"], ["a"]),
        helper.make_node("GlobalAveragePool", ["a"], ["p"]),
        helper.make_node("Flatten", ["p"], ["y"]),
    ]
    constants = {
        "k": RNG.standard_normal((3, 1, 3, 3)).astype(np.float32),
        "factor": np.array([1.0, 1.0, 1.5, 1.5], np.float32),
    }
    graph = helper.make_graph(
        nodes,
        "shape_arithmetic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    assert non_differentiable_ops(model) == []
    x = inputs()
    through = build_twin(model, straight_through=True)
    torch.testing.assert_close(through(x).detach(), session_scores(model, x), atol=1e-5, rtol=1e-5)
    assert torch.equal(input_gradient(through, x), input_gradient(build_twin(model), x))


def test_a_relu_written_as_where_keeps_its_true_gradient() -> None:
    """``Where(x > 0, x, 0)`` hides nothing: the chosen branch carries the gradient, no step term is added."""
    nodes = [
        helper.make_node("Greater", ["x", "zero"], ["positive"]),
        helper.make_node("Where", ["positive", "x", "zero"], ["h"]),
    ]
    model = mlp_model(nodes, {"zero": np.array(0.0, np.float32)})
    assert non_differentiable_ops(model) == []
    x = torch.from_numpy(RNG.standard_normal((8, 4)).astype(np.float32))
    plain = input_gradient(build_twin(model), x)
    assert plain.abs().sum() > 0
    assert torch.equal(input_gradient(build_twin(model, straight_through=True), x), plain)


def test_a_comparison_cast_to_int_and_back_gets_the_straight_through_gradient() -> None:
    nodes = [
        helper.make_node("GreaterOrEqual", ["x", "half"], ["above"]),
        helper.make_node("Not", ["above"], ["below"]),
        helper.make_node("Cast", ["below"], ["count"], to=TensorProto.INT64),
        helper.make_node("Cast", ["count"], ["h"], to=TensorProto.FLOAT),
    ]
    model = mlp_model(nodes, {"half": np.array(0.5, np.float32)})
    assert non_differentiable_ops(model) == ["GreaterOrEqual"]
    x = torch.from_numpy(RNG.random((8, 4), dtype=np.float32))
    through = build_twin(model, straight_through=True)
    torch.testing.assert_close(through(x).detach(), session_scores(model, x), atol=1e-5, rtol=1e-5)
    # Not(x >= t) falls as x rises: the straight-through slope is -1.
    without = mlp_model([helper.make_node("Identity", ["x"], ["h"])], {})
    expected = -input_gradient(build_twin(without), (x < 0.5).float())
    torch.testing.assert_close(input_gradient(through, x), expected, atol=1e-6, rtol=1e-5)


# The new ops against ONNX Runtime.


def one_node(
    op: str,
    inputs_: list[str],
    constants: dict[str, np.ndarray],
    x_type: int,
    y_type: int,
    x_shape: list[int],
    opset: int = 19,
    **attrs: object,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node(op, inputs_, ["y"], **attrs)],
        "new_op",
        [helper.make_tensor_value_info("x", x_type, x_shape)],
        [helper.make_tensor_value_info("y", y_type, None)],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model


def run_session(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_the_new_ops_are_listed() -> None:
    assert {"Round", "Sin", "Cos", "QuantizeLinear", "DequantizeLinear"} <= set(supported_ops())


@pytest.mark.parametrize("op", ["Round", "Sin", "Cos"])
def test_unary_ops_match_onnxruntime(op) -> None:
    # Halves round to even in ONNX; one value just below a half does not round up.
    x = np.array([[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999997, 3.7, -3.2, 100.25]], np.float32)
    model = one_node(op, ["x"], {}, TensorProto.FLOAT, TensorProto.FLOAT, list(x.shape))
    np.testing.assert_allclose(
        build_twin(model)(torch.from_numpy(x)).numpy(), run_session(model, x), atol=1e-6
    )


QUANTISE_CASES = {
    "uint8-per-tensor": ({"scale": np.array(0.1, np.float32), "zero": np.array(128, np.uint8)}, 1),
    "int8-per-tensor": ({"scale": np.array(0.05, np.float32), "zero": np.array(-2, np.int8)}, 1),
    "uint8-no-zero-point": ({"scale": np.array(0.1, np.float32)}, 1),
    "int8-per-axis-1": (
        {"scale": np.array([0.1, 0.02, 0.5], np.float32), "zero": np.array([0, 7, -9], np.int8)},
        1,
    ),
    "uint8-per-axis-0": (
        {"scale": np.array([0.1, 0.25], np.float32), "zero": np.array([3, 200], np.uint8)},
        0,
    ),
    "uint8-per-axis-last": (
        {"scale": np.array([0.1, 0.3, 0.2, 0.05], np.float32), "zero": np.array([1, 2, 3, 4], np.uint8)},
        -1,
    ),
}


def quantise_input() -> np.ndarray:
    x = (RNG.standard_normal((2, 3, 4)) * 4).astype(np.float32)
    # Exact halves of the step (which round to even), and values far past the range (which saturate).
    x[0, 0, :] = [0.25, 0.15, -0.05, 0.35]
    x[1, 2, :] = [1000.0, -1000.0, 25.0, -25.0]
    return x


@pytest.mark.parametrize("opset", [13, 19])
@pytest.mark.parametrize("case", sorted(QUANTISE_CASES))
def test_quantize_linear_matches_onnxruntime(case, opset) -> None:
    constants, axis = QUANTISE_CASES[case]
    x = quantise_input()
    out_type = TensorProto.INT8 if constants.get("zero", np.uint8(0)).dtype == np.int8 else TensorProto.UINT8
    model = one_node(
        "QuantizeLinear",
        ["x", *constants],
        constants,
        TensorProto.FLOAT,
        out_type,
        list(x.shape),
        opset,
        axis=axis,
    )
    expected = run_session(model, x)
    got = build_twin(model)(torch.from_numpy(x))
    assert got.dtype == torch.from_numpy(expected).dtype
    np.testing.assert_array_equal(got.numpy(), expected)
    through = build_twin(model, straight_through=True)(torch.from_numpy(x))
    np.testing.assert_array_equal(through.numpy(), expected.astype(np.float32))


@pytest.mark.parametrize("case", sorted(QUANTISE_CASES))
def test_dequantize_linear_matches_onnxruntime(case) -> None:
    constants, axis = QUANTISE_CASES[case]
    dtype = constants.get("zero", np.uint8(0)).dtype
    info = np.iinfo(dtype)
    q = RNG.integers(info.min, info.max + 1, (2, 3, 4)).astype(dtype)
    elem = TensorProto.INT8 if dtype == np.int8 else TensorProto.UINT8
    model = one_node(
        "DequantizeLinear",
        ["x", *constants],
        constants,
        elem,
        TensorProto.FLOAT,
        list(q.shape),
        19,
        axis=axis,
    )
    twin = build_twin(model)
    # The twin takes the graph's input as gate gives it; a quantised input is fed as its integer tensor.
    twin.input_dtype = torch.from_numpy(q).dtype
    np.testing.assert_allclose(twin(torch.from_numpy(q)).numpy(), run_session(model, q), rtol=0, atol=0)


def test_dequantize_int32_matches_onnxruntime() -> None:
    q = RNG.integers(-(2**20), 2**20, (3, 5)).astype(np.int32)
    model = one_node(
        "DequantizeLinear",
        ["x", "scale"],
        {"scale": np.array(0.001, np.float32)},
        TensorProto.INT32,
        TensorProto.FLOAT,
        list(q.shape),
    )
    twin = build_twin(model)
    twin.input_dtype = torch.int32
    np.testing.assert_allclose(twin(torch.from_numpy(q)).numpy(), run_session(model, q), rtol=0, atol=0)


def test_integer_arithmetic_between_the_casts_still_truncates() -> None:
    """``(x·255 → int64) // 16 → float / 16``: the integer Div truncates though its values are carried in float."""
    nodes = [
        helper.make_node("Mul", ["x", "full"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["levels"], to=TensorProto.INT64),
        helper.make_node("Div", ["levels", "sixteen"], ["coarse"]),
        helper.make_node("Cast", ["coarse"], ["coarse_f"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["coarse_f", "sixteen_f"], ["h"]),
    ]
    constants = {
        "full": np.array(255.0, np.float32),
        "sixteen": np.array(16, np.int64),
        "sixteen_f": np.array(16.0, np.float32),
    }
    model = mlp_model(nodes, constants)
    assert non_differentiable_ops(model) == ["Cast to int64"]
    x = torch.from_numpy(RNG.random((16, 4), dtype=np.float32))
    through = build_twin(model, straight_through=True)
    torch.testing.assert_close(through(x).detach(), session_scores(model, x), atol=1e-5, rtol=1e-5)
    without = mlp_model([helper.make_node("Identity", ["x"], ["h"])], {})
    coarse = torch.div((x * 255).long(), 16, rounding_mode="trunc").float() / 16
    expected = 255 / 256 * input_gradient(build_twin(without), coarse)
    torch.testing.assert_close(input_gradient(through, x), expected, atol=1e-6, rtol=1e-5)
