"""Tests of gate/certify/bounds.py: interval bounds contain every output of the box, no verified sample is
broken by gate's attacks, the bounds shrink to the point at eps 0, and graphs without a rule fail closed."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from conftest import DIGITS_SHAPE, DigitsMLP, train_digits_model
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from gate.attacks.registry import make_attack
from gate.certify.bounds import (
    ROUNDING_SLACK,
    IntervalBounds,
    UnsupportedBoundOps,
    bound_logits,
    bound_margins,
    bound_support,
    verified,
    verify,
)
from gate.errors import CheckError
from gate.model import export_to_onnx
from gate.model.twin import build_twin

FLOAT_TOLERANCE = 1e-5


# ---------------------------------------------------------------------------------------------- models
class BatchNormCNN(nn.Module):
    """Conv, ReLU, BatchNorm (after the ReLU, so no exporter folds it into the Conv), MaxPool, LeakyReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(8), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.LeakyReLU(0.1),
        )  # fmt: skip
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return torch.softmax(self.head(h.reshape(h.shape[0], -1)), dim=1)


def small_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip


def reference_ibp(model: nn.Sequential, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """IBP written directly on the torch layers (Gowal et al.'s equations): the ONNX propagation's peer,
    and the training signal of :func:`ibp_trained_cnn`."""
    for layer in model:
        center, radius = (upper + lower) / 2, (upper - lower) / 2
        if isinstance(layer, nn.Linear):
            center, radius = layer(center), F.linear(radius, layer.weight.abs())
        elif isinstance(layer, nn.Conv2d):
            center = layer(center)
            radius = F.conv2d(radius, layer.weight.abs(), None, layer.stride, layer.padding)
        else:
            lower, upper = layer(lower), layer(upper)
            continue
        lower, upper = center - radius, center + radius
    return lower, upper


def ibp_trained_cnn(x: np.ndarray, y: np.ndarray, *, eps: float, epochs: int, seed: int = 0) -> nn.Sequential:
    """Gowal et al.'s training: cross-entropy on the clean logits, then more and more on the worst case of a
    box whose eps grows over the middle epochs (a short ramp collapses the model to one class); so that
    many held-out digits are really verified at ``eps``."""
    torch.manual_seed(seed)
    model = small_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    warmup, ramp_epochs = epochs // 4, epochs // 2
    for epoch in range(epochs):
        ramp = min(1.0, max(0.0, (epoch + 1 - warmup) / ramp_epochs))
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), 64):
            xb, yb = xt[order[start : start + 64]], yt[order[start : start + 64]]
            lower, upper = reference_ibp(model, (xb - ramp * eps).clamp(0, 1), (xb + ramp * eps).clamp(0, 1))
            worst = torch.where(F.one_hot(yb, 10).bool(), lower, upper)
            robust_weight = 0.5 * ramp
            clean_loss, robust_loss = F.cross_entropy(model(xb), yb), F.cross_entropy(worst, yb)
            loss = (1 - robust_weight) * clean_loss + robust_weight * robust_loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def exported(module: nn.Module, path: Path, exporter: str = "dynamo") -> onnx.ModelProto:
    export_to_onnx(module, torch.zeros(1, *DIGITS_SHAPE), path, exporter=exporter)
    return onnx.load(path)


@pytest.fixture(scope="module")
def mlp_graph(digits_split, tmp_path_factory) -> onnx.ModelProto:
    model = train_digits_model(DigitsMLP, digits_split["x_train"], digits_split["y_train"], epochs=8)
    return exported(model, tmp_path_factory.mktemp("bounds") / "mlp.onnx")


@pytest.fixture(scope="module")
def batchnorm_cnn(digits_split) -> nn.Module:
    return train_digits_model(BatchNormCNN, digits_split["x_train"], digits_split["y_train"], epochs=4)


@pytest.fixture(scope="module", params=["dynamo", "torchscript"])
def batchnorm_cnn_graph(request, batchnorm_cnn, tmp_path_factory) -> onnx.ModelProto:
    """Both exporters: TorchScript's graph computes the Reshape target with Shape/Gather/Concat."""
    return exported(
        batchnorm_cnn, tmp_path_factory.mktemp("bounds") / f"bn_{request.param}.onnx", request.param
    )


@pytest.fixture(scope="module")
def ibp_cnn(digits_split) -> nn.Sequential:
    return ibp_trained_cnn(digits_split["x_train"], digits_split["y_train"], eps=0.05, epochs=12)


@pytest.fixture(scope="module")
def ibp_cnn_graph(ibp_cnn, tmp_path_factory) -> onnx.ModelProto:
    return exported(ibp_cnn, tmp_path_factory.mktemp("bounds") / "ibp_cnn.onnx")


def held_out(digits_split, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(digits_split["x_test"][:count]), torch.from_numpy(digits_split["y_test"][:count])


def box(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The L-inf ball intersected with the input range, the set gate's attacks search."""
    return (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)


def session_outputs(graph: onnx.ModelProto, x: torch.Tensor, output: str | None = None) -> torch.Tensor:
    """ONNX Runtime's value of the graph's output, or of an inner value made an extra graph output."""
    graph = onnx.ModelProto.FromString(graph.SerializeToString())
    if output is not None and output not in [o.name for o in graph.graph.output]:
        graph.graph.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, None))
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    name = output or graph.graph.output[0].name
    (value,) = session.run([name], {session.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(value)


def points_in(lower: torch.Tensor, upper: torch.Tensor, count: int, seed: int = 0) -> torch.Tensor:
    """``[count, B, ...]``: uniform points of the box and as many random corners (where ReLUs flip most)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (count, *lower.shape)
    uniform = torch.rand(shape, generator=generator)
    corners = torch.randint(0, 2, shape, generator=generator).float()
    weights = torch.cat([uniform, corners])
    return lower + weights * (upper - lower)


def assert_contains(graph: onnx.ModelProto, lower: torch.Tensor, upper: torch.Tensor, points: torch.Tensor,
                    output: str | None = None) -> None:  # fmt: skip
    bounds_low, bounds_high = bound_logits(graph, lower, upper, output=output)
    target = IntervalBounds(graph).target(output)
    for point in points:
        value = session_outputs(graph, point.contiguous(), target)
        assert bool((bounds_low <= value).all()), (bounds_low - value).max()
        assert bool((value <= bounds_high).all()), (value - bounds_high).max()


# ------------------------------------------------------------------------------------ (1) soundness
@pytest.mark.parametrize("eps", [0.01, 0.1])
def test_the_mlp_bounds_contain_the_session_outputs_of_points_in_the_box(
    mlp_graph, digits_split, eps
) -> None:
    x, _ = held_out(digits_split, 16)
    lower, upper = box(x, eps)
    assert_contains(mlp_graph, lower, upper, points_in(lower, upper, 40))


@pytest.mark.parametrize("eps", [0.01, 0.1])
def test_the_batchnorm_cnn_bounds_contain_the_session_logits(batchnorm_cnn_graph, digits_split, eps) -> None:
    assert bound_support(batchnorm_cnn_graph) == []
    ops = {node.op_type for node in batchnorm_cnn_graph.graph.node}
    assert {"BatchNormalization", "MaxPool", "LeakyRelu", "Softmax"} <= ops
    x, _ = held_out(digits_split, 16)
    lower, upper = box(x, eps)
    assert_contains(batchnorm_cnn_graph, lower, upper, points_in(lower, upper, 30))


def test_the_final_softmax_is_bounded_soundly_when_asked_for(batchnorm_cnn_graph, digits_split) -> None:
    x, _ = held_out(digits_split, 8)
    lower, upper = box(x, 0.05)
    output = batchnorm_cnn_graph.graph.output[0].name
    assert IntervalBounds(batchnorm_cnn_graph).target(output) == output
    assert_contains(batchnorm_cnn_graph, lower, upper, points_in(lower, upper, 20), output=output)
    low, high = bound_logits(batchnorm_cnn_graph, lower, upper, output=output)
    slack = 2.01 * ROUNDING_SLACK  # probabilities are at most 1, so the slack is at most about this
    assert bool((low >= -slack).all() and (high <= 1 + slack).all())


def test_the_bounds_contain_every_corner_of_a_tiny_box() -> None:
    rng = np.random.default_rng(1)
    graph = model_of(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Add", ["h", "b1"], ["a"]),
            helper.make_node("Tanh", ["a"], ["t"]),
            helper.make_node("Gemm", ["t", "w2", "b2"], ["y"], transB=1),
        ],
        {
            "w1": rng.normal(size=(3, 6)),
            "b1": rng.normal(size=6),
            "w2": rng.normal(size=(4, 6)),
            "b2": rng.normal(size=4),
        },
        (2, 3),
    )
    center = torch.tensor([[0.2, -0.4, 0.9], [0.0, 0.5, -1.0]])
    lower, upper = center - 0.3, center + 0.3
    bits = torch.tensor([[(i >> k) & 1 for k in range(3)] for i in range(8)], dtype=torch.float32)
    corners = lower + bits[:, None, :] * (upper - lower)
    assert_contains(graph, lower, upper, torch.cat([corners, points_in(lower, upper, 50)]))


def test_the_bounds_match_ibp_written_on_the_torch_layers(ibp_cnn, ibp_cnn_graph, digits_split) -> None:
    x, _ = held_out(digits_split, 32)
    lower, upper = box(x, 0.05)
    ours = IntervalBounds(ibp_cnn_graph).bounds(lower, upper)  # float64, before the rounding slack
    with torch.no_grad():
        theirs = reference_ibp(copy.deepcopy(ibp_cnn).double(), lower.double(), upper.double())
    torch.testing.assert_close(ours.lower, theirs[0], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours.upper, theirs[1], rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------------ per-operator rules
def model_of(nodes, initializers: dict, input_shape: tuple[int, ...], opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "bounds",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, dtype=_dtype(v)), name) for name, v in initializers.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _dtype(value) -> type:
    kind = np.asarray(value).dtype.kind
    return np.int64 if kind in "iu" else np.bool_ if kind == "b" else np.float32


_RNG = np.random.default_rng(0)
_IMAGE = (2, 4, 5, 5)
_W = _RNG.normal(size=(6, 4, 3, 3))
_SIGNED = _RNG.normal(size=(1, 4, 1, 1))
OP_CASES = {
    "Conv": ([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 0, 1, 2], strides=[2, 1])],
             {"w": _W, "b": _RNG.normal(size=6)}),
    "Conv-group": ([helper.make_node("Conv", ["x", "w"], ["y"], group=2, dilations=[2, 2])],
                   {"w": _RNG.normal(size=(4, 2, 2, 2))}),
    "ConvTranspose": ([helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])],
                      {"w": _RNG.normal(size=(4, 3, 3, 3))}),
    "BatchNormalization": ([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])],
                           {"s": [1.5, -2.0, 0.3, -0.1], "b": [0.1, 0.2, -0.3, 0.0], "m": [0.5, -0.2, 0.0, 1.0],
                            "v": [0.5, 2.0, 1.0, 0.1]}),
    "Mul-signed": ([helper.make_node("Mul", ["x", "k"], ["y"])], {"k": _SIGNED}),
    "Div-signed": ([helper.make_node("Div", ["x", "k"], ["y"])], {"k": _SIGNED}),
    "Sub-from-constant": ([helper.make_node("Sub", ["k", "x"], ["y"])], {"k": _SIGNED}),
    "Add-two-bounded": ([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"])], {}),
    "Sub-two-bounded": ([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sub", ["x", "r"], ["y"])], {}),
    "Mul-two-bounded": ([helper.make_node("Mul", ["x", "x"], ["y"])], {}),
    "Sum-Max-Min": ([helper.make_node("Max", ["x", "k"], ["m"]), helper.make_node("Min", ["x", "k"], ["n"]),
                     helper.make_node("Sum", ["m", "n", "x"], ["y"])], {"k": _SIGNED}),
    "LeakyRelu": ([helper.make_node("LeakyRelu", ["x"], ["y"], alpha=0.1)], {}),
    "LeakyRelu-negative-slope": ([helper.make_node("LeakyRelu", ["x"], ["y"], alpha=-0.5)], {}),
    "PRelu": ([helper.make_node("PRelu", ["x", "k"], ["y"])], {"k": _SIGNED}),
    "Sigmoid-Tanh-Elu": ([helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Tanh", ["s"], ["t"]),
                          helper.make_node("Elu", ["x"], ["e"]), helper.make_node("Add", ["t", "e"], ["y"])], {}),
    "Softplus-Abs-Neg": ([helper.make_node("Softplus", ["x"], ["s"]), helper.make_node("Abs", ["x"], ["a"]),
                          helper.make_node("Neg", ["a"], ["n"]), helper.make_node("Add", ["s", "n"], ["y"])], {}),
    "Clip": ([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], {"lo": -0.2, "hi": 0.4}),
    "Clip-opset-6": ([helper.make_node("Clip", ["x"], ["y"], min=-0.2, max=0.4)], {}, 6),
    "MaxPool": ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])], {}),
    "AveragePool": ([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], pads=[1, 1, 0, 0])], {}),
    "GlobalPools": ([helper.make_node("GlobalAveragePool", ["x"], ["a"]), helper.make_node("GlobalMaxPool", ["x"], ["m"]),
                     helper.make_node("Sub", ["a", "m"], ["y"])], {}),
    "ReduceMean-ReduceSum": ([helper.make_node("ReduceMean", ["x", "axes"], ["m"]),
                              helper.make_node("ReduceSum", ["x", "axes"], ["s"]),
                              helper.make_node("Add", ["m", "s"], ["y"])], {"axes": [2, 3]}, 18),
    "Flatten-Gemm": ([helper.make_node("Flatten", ["x"], ["f"]),
                      helper.make_node("Gemm", ["f", "w"], ["y"], alpha=-0.5, transB=1)], {"w": _RNG.normal(size=(3, 100))}),
    "MatMul-constant-left": ([helper.make_node("MatMul", ["w", "x"], ["y"])], {"w": _RNG.normal(size=(3, 5))}),
    "Transpose-Reshape-Squeeze": ([helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
                                   helper.make_node("Reshape", ["t", "shape"], ["r"]),
                                   helper.make_node("Unsqueeze", ["r", "one"], ["u"]),
                                   helper.make_node("Squeeze", ["u", "one"], ["y"])], {"shape": [0, -1], "one": [1]}),
    "Concat-Pad-Slice": ([helper.make_node("Concat", ["x", "k4"], ["c"], axis=1),
                          helper.make_node("Pad", ["c", "pads", "fill"], ["p"]),
                          helper.make_node("Slice", ["p", "starts", "ends", "axes"], ["y"])],
                         {"k4": np.zeros((2, 1, 5, 5)), "pads": [0, 0, 1, 1, 0, 0, 1, 1], "fill": 0.7,
                          "starts": [1, 0], "ends": [4, 100], "axes": [1, 2]}),
    "Pad-reflect-Gather": ([helper.make_node("Pad", ["x", "pads"], ["p"], mode="reflect"),
                            helper.make_node("Gather", ["p", "idx"], ["y"], axis=1)],
                           {"pads": [0, 0, 1, 2, 0, 0, 2, 1], "idx": [3, 0, -1]}),
    "Where-Cast": ([helper.make_node("Where", ["cond", "x", "k"], ["w"]),
                    helper.make_node("Cast", ["w"], ["y"], to=TensorProto.FLOAT)],
                   {"cond": np.array([[[[True]], [[False]], [[True]], [[False]]]]), "k": _SIGNED}),
    "Shape-chain-Reshape": ([helper.make_node("Shape", ["x"], ["s"]),
                             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
                             helper.make_node("Unsqueeze", ["n", "zeros"], ["n1"]),
                             helper.make_node("Concat", ["n1", "minus"], ["target"], axis=0),
                             helper.make_node("Reshape", ["x", "target"], ["y"])],
                            {"zero": np.array(0), "zeros": [0], "minus": [-1]}),
    "Softmax": ([helper.make_node("Softmax", ["x"], ["s"], axis=1), helper.make_node("Identity", ["s"], ["y"])], {}),
    "LogSoftmax": ([helper.make_node("LogSoftmax", ["x"], ["s"], axis=1), helper.make_node("Identity", ["s"], ["y"])], {}),
    "Softmax-opset-11": ([helper.make_node("Softmax", ["x"], ["s"], axis=1), helper.make_node("Identity", ["s"], ["y"])],
                         {}, 11),
}  # fmt: skip
"""Graphs of one or a few ops on a bounded ``[2, 4, 5, 5]`` input; ``Where``'s condition is a constant."""


@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_each_rule_contains_the_session_outputs_of_points_in_the_box(case: str) -> None:
    nodes, initializers, *opset = OP_CASES[case]
    graph = model_of(nodes, initializers, _IMAGE, *opset)
    assert bound_support(graph) == []
    generator = torch.Generator().manual_seed(3)
    center = torch.randn(_IMAGE, generator=generator)
    radius = 0.5 * torch.rand(_IMAGE, generator=generator)
    assert_contains(graph, center - radius, center + radius, points_in(center - radius, center + radius, 25))


# ----------------------------------------------------------------------- (2) no attack breaks them
@pytest.mark.parametrize(
    ("model", "eps"), [("ibp_cnn_graph", 0.02), ("ibp_cnn_graph", 0.05), ("mlp_graph", 0.02)]
)
def test_no_verified_sample_is_broken_by_gates_attacks(request, digits_split, model: str, eps: float) -> None:
    graph = request.getfixturevalue(model)
    x, y = held_out(digits_split, 120)
    lower, upper = box(x, eps)
    certified = verify(graph, lower, upper, y)
    assert 10 < int(certified.sum()) < len(x), "the fixture should verify some but not all samples"
    twin = build_twin(graph)
    attacks = [
        make_attack("pgd", norm="linf", eps=eps, steps=30, restarts=3, seed=1),
        make_attack("apgd-ce", norm="linf", eps=eps, steps=40, seed=2),
        make_attack("apgd-dlr", norm="linf", eps=eps, steps=25, n_target_classes=3, seed=3),
    ]
    for attack in attacks:
        outcome = attack.perturb(twin, x, y)
        assert bool(outcome.robust[certified].all()), f"{attack!r} broke a verified sample"
        # The session (the shipped artifact) agrees on the adversarial points of the verified samples.
        predicted = session_outputs(graph, outcome.x_adv[certified]).argmax(1)
        assert bool((predicted == y[certified]).all())


def test_eliding_the_last_layer_is_tighter_and_still_sound(ibp_cnn_graph, digits_split) -> None:
    x, y = held_out(digits_split, 64)
    lower, upper = box(x, 0.05)
    assert IntervalBounds(ibp_cnn_graph).final_affine() is not None
    elided = bound_margins(ibp_cnn_graph, lower, upper, y)
    low, high = bound_logits(ibp_cnn_graph, lower, upper)
    plain = (low.gather(1, y[:, None]) - high).scatter(1, y[:, None], torch.inf)
    assert bool((elided >= plain - FLOAT_TOLERANCE).all()) and bool((elided > plain + 0.1).any())
    assert bool((verify(ibp_cnn_graph, lower, upper, y) >= verified(low, high, y)).all())
    for point in points_in(lower, upper, 20):
        logits = session_outputs(ibp_cnn_graph, point.contiguous())
        true_margins = logits.gather(1, y[:, None]) - logits
        assert bool((elided <= true_margins.scatter(1, y[:, None], torch.inf)).all())


# ------------------------------------------------------------------------------ (3) tight at eps 0
def test_the_bounds_shrink_to_the_logits_at_eps_zero(batchnorm_cnn_graph, digits_split) -> None:
    x, _ = held_out(digits_split, 16)
    target = IntervalBounds(batchnorm_cnn_graph).target()
    logits = session_outputs(batchnorm_cnn_graph, x, target)
    low, high = bound_logits(batchnorm_cnn_graph, x, x)
    # At a point only the rounding slack (plus float32's own error and one ulp, far below it) separates them.
    slack = ROUNDING_SLACK * (1 + logits.abs().amax(1, keepdim=True))
    assert bool(((logits - low) <= 1.1 * slack).all() and ((high - logits) <= 1.1 * slack).all())
    assert bool((low <= logits).all() and (logits <= high).all())
    widths = [
        float((bound_logits(batchnorm_cnn_graph, *box(x, eps))[1] - logits).max())
        for eps in (1e-2, 1e-3, 1e-4)
    ]
    assert widths[0] > widths[1] > widths[2]


def test_the_float64_bounds_at_a_point_sit_well_inside_the_rounding_slack(
    batchnorm_cnn_graph, digits_split
) -> None:
    x, _ = held_out(digits_split, 64)
    bounds = IntervalBounds(batchnorm_cnn_graph)
    exact = bounds.bounds(x, x)
    logits = session_outputs(batchnorm_cnn_graph, x, bounds.target()).double()
    relative = (exact.lower - logits).abs().amax(1) / (1 + logits.abs().amax(1))
    assert float(relative.max()) < 1e-6  # ROUNDING_SLACK is 1e-5: ten times what float32 costs here


def test_verified_reads_the_margin_of_the_logit_bounds() -> None:
    lower = torch.tensor([[2.0, 0.0, 0.5], [1.0, 0.9, 0.0]])
    upper = torch.tensor([[3.0, 1.9, 1.0], [2.0, 1.5, 0.2]])
    assert verified(lower, upper, torch.tensor([0, 0])).tolist() == [True, False]


# ------------------------------------------------------------------------------- (4) fail closed
def test_an_op_without_a_rule_is_named_and_refused() -> None:
    graph = model_of(
        [helper.make_node("Gelu", ["x"], ["g"]), helper.make_node("Relu", ["g"], ["y"])], {}, (2, 3), opset=20
    )
    assert bound_support(graph) == ["Gelu"]
    with pytest.raises(UnsupportedBoundOps, match="Gelu") as raised:
        bound_logits(graph, torch.zeros(2, 3), torch.ones(2, 3))
    assert raised.value.ops == ["Gelu"] and isinstance(raised.value, CheckError)


def test_variants_without_a_rule_are_named_with_the_reason() -> None:
    graph = model_of(
        [
            helper.make_node("MatMul", ["x", "x"], ["m"]),
            helper.make_node("Div", ["k", "m"], ["d"]),
            helper.make_node("Elu", ["d"], ["e"], alpha=-1.0),
            helper.make_node("Cast", ["e"], ["y"], to=TensorProto.INT64),
        ],
        {"k": 2.0},
        (3, 3),
    )
    assert bound_support(graph) == [
        "Cast (to a non-float type 7)",
        "Div (input 1 depends on the model's input)",
        "Elu (negative alpha: not monotone)",
        "MatMul (both factors depend on the model's input)",
    ]
    with pytest.raises(UnsupportedBoundOps, match="MatMul"):
        bound_logits(graph, torch.zeros(3, 3), torch.ones(3, 3))


def test_a_custom_domain_op_is_refused_and_ops_on_constants_or_after_the_logits_do_not_count() -> None:
    nodes = [
        helper.make_node("Gelu", ["k"], ["gk"]),  # constant only: evaluated exactly, no rule needed
        helper.make_node("Add", ["x", "gk"], ["a"]),
        helper.make_node("Scale", ["a"], ["s"], domain="custom.ops"),
        helper.make_node("Softmax", ["s"], ["y"]),
    ]
    graph = model_of(nodes, {"k": [0.5, -0.5, 1.0]}, (2, 3), opset=20)
    graph.opset_import.append(helper.make_opsetid("custom.ops", 1))
    assert bound_support(graph) == ["custom.ops::Scale"]
    assert bound_support(graph, output="a") == []
    low, high = bound_logits(graph, torch.zeros(2, 3), torch.ones(2, 3), output="a")
    assert bool((low < high).all())


def test_inconsistent_input_bounds_are_refused(mlp_graph) -> None:
    x = torch.zeros(2, *DIGITS_SHAPE)
    with pytest.raises(CheckError, match="lower <= upper"):
        bound_logits(mlp_graph, x + 1, x)
    with pytest.raises(CheckError, match="finite"):
        bound_logits(mlp_graph, x - torch.inf, x)


# --------------------------------------------------------------------------------- (5) the peer
@pytest.mark.peers
def test_the_bounds_equal_auto_lirpa_ibp(ibp_cnn, ibp_cnn_graph, digits_split) -> None:
    lirpa = pytest.importorskip("auto_LiRPA")
    x, _ = held_out(digits_split, 16)
    lower, upper = box(x, 0.05)
    bounded = lirpa.BoundedModule(ibp_cnn, torch.zeros(1, *DIGITS_SHAPE))
    perturbation = lirpa.PerturbationLpNorm(norm=np.inf, x_L=lower, x_U=upper)
    theirs = bounded.compute_bounds(x=(lirpa.BoundedTensor(x, perturbation),), method="IBP")
    for mine, peer in zip(bound_logits(ibp_cnn_graph, lower, upper), theirs, strict=True):
        torch.testing.assert_close(mine, peer.detach(), rtol=1e-4, atol=1e-4)
