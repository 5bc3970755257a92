"""Interval rules per ONNX operator: how a box around a node's inputs maps to a box around its outputs.

A rule receives the twin's call context (decoded attributes, opset), the twin's own op function for the
node (so shapes, pads and axes are interpreted exactly as the twin runs them) and the node's inputs, each
an :class:`Interval` (it depends on the model's input) or a plain tensor (a weight, a shape, a constant).
Every rule is sound: for any point inside the input boxes, the op's output lies inside the returned box.
The rules follow Gowal et al., "On the Effectiveness of Interval Bound Propagation for Training Verifiably
Robust Models" (2018): monotone ops map the two corners, affine ops use the centre/radius form
``W·c ± |W|·r``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gate.errors import CheckError
from gate.model.twin.call import OpCall, OpFunction
from gate.model.twin.elementwise import TORCH_DTYPES
from gate.model.twin.nn_ops import batch_normalization


class UnsupportedBoundOps(CheckError):
    """The graph uses operators (or variants of them) that have no interval rule: no certificate is given.

    ``ops`` names them, as :func:`gate.certify.bounds.bound_support` lists them.
    """

    def __init__(self, ops: list[str], *, hint: str | None = None) -> None:
        self.ops = sorted(set(ops))
        super().__init__(
            "interval bound propagation has no rule for operator(s) "
            f"{', '.join(self.ops)} in this graph, so it cannot certify the model",
            hint=hint
            or "use method: randomized_smoothing, or export the model without these operators "
            "(docs/certified.md lists the supported ones)",
        )


@dataclass(frozen=True)
class Interval:
    """Elementwise bounds ``lower <= value <= upper`` of a tensor that depends on the model's input."""

    lower: torch.Tensor
    upper: torch.Tensor

    @classmethod
    def point(cls, value: torch.Tensor) -> Interval:
        return cls(value, value)

    @classmethod
    def around(cls, center: torch.Tensor, radius: torch.Tensor) -> Interval:
        return cls(center - radius, center + radius)

    @property
    def center(self) -> torch.Tensor:
        return (self.upper + self.lower) / 2

    @property
    def radius(self) -> torch.Tensor:
        return (self.upper - self.lower) / 2


Value = torch.Tensor | Interval
BoundFunction = Callable[..., "Interval | tuple[Interval, ...]"]


@dataclass(frozen=True)
class BoundRule:
    """How one operator propagates intervals.

    Args:
        propagate: ``propagate(call, twin_function, *inputs)``.
        constant_inputs: Input positions that must not depend on the model's input (weights, shapes, axes);
            ``bound_support`` reports a graph that feeds them from the input.
        one_constant_of: Input positions of which at least one must be constant (MatMul, Gemm: a product of
            two bounded tensors has no rule here).
        refuse: A static check of the attributes: the variant it cannot bound, or ``None``.
    """

    propagate: BoundFunction
    constant_inputs: tuple[int, ...] = ()
    one_constant_of: tuple[int, ...] = ()
    refuse: Callable[[OpCall], str | None] | None = None


def _interval(value: Value) -> Interval:
    return value if isinstance(value, Interval) else Interval.point(value)


def _corner(value: Value | None, which: str) -> torch.Tensor | None:
    return getattr(value, which) if isinstance(value, Interval) else value


def _pack(lowers: torch.Tensor | tuple[torch.Tensor, ...], uppers) -> Interval | tuple[Interval, ...]:
    if isinstance(lowers, tuple):
        return tuple(Interval(low, high) for low, high in zip(lowers, uppers, strict=True))
    return Interval(lowers, uppers)


def monotone(call: OpCall, function: OpFunction, *inputs: Value | None) -> Interval | tuple[Interval, ...]:
    """An op nondecreasing in every bounded input: its value at the lower corner and at the upper corner.

    Covers copies and selections (reshape, transpose, slice, gather, pad, concat), max and average pooling,
    sums and means, and increasing activations.
    """
    lowers = function(call, *(_corner(v, "lower") for v in inputs))
    uppers = function(call, *(_corner(v, "upper") for v in inputs))
    return _pack(lowers, uppers)


def float_cast(call: OpCall, function: OpFunction, x: Interval) -> Interval:
    # Bounds stay in float64: a cast to a narrower float only rounds, which the final widening covers.
    return x


def _cast_refusal(call: OpCall) -> str | None:
    target = TORCH_DTYPES.get(call.attr("to"))
    if target is None or not target.is_floating_point:
        return f"Cast (to a non-float type {call.attr('to')})"
    return None


def _negative_attribute(op: str, *names: str) -> Callable[[OpCall], str | None]:
    defaults = {"alpha": 1.0, "gamma": 1.0}

    def refuse(call: OpCall) -> str | None:
        negative = [n for n in names if float(call.attr(n, defaults.get(n, 1.0))) < 0]
        return f"{op} (negative {', '.join(negative)}: not monotone)" if negative else None

    return refuse


def leaky_relu(call: OpCall, function: OpFunction, x: Interval) -> Interval:
    # relu(x) + alpha * min(x, 0): both terms are bounded separately, so any alpha is sound
    # (and exact for alpha >= 0, where the function is monotone).
    alpha = float(call.attr("alpha", 0.01))
    low_neg, high_neg = x.lower.clamp(max=0), x.upper.clamp(max=0)
    scaled = (alpha * low_neg, alpha * high_neg) if alpha >= 0 else (alpha * high_neg, alpha * low_neg)
    return Interval(x.lower.clamp(min=0) + scaled[0], x.upper.clamp(min=0) + scaled[1])


def prelu(call: OpCall, function: OpFunction, x: Interval, slope: torch.Tensor) -> Interval:
    slope = slope.to(x.lower.dtype)
    negative = Interval(x.lower.clamp(max=0), x.upper.clamp(max=0))
    scaled = _scale(negative, slope)
    return Interval(x.lower.clamp(min=0) + scaled.lower, x.upper.clamp(min=0) + scaled.upper)


def _scale(x: Interval, factor: torch.Tensor) -> Interval:
    """``x * factor`` for a constant factor of any sign."""
    return Interval.around(x.center * factor, x.radius * factor.abs())


def neg(call: OpCall, function: OpFunction, x: Interval) -> Interval:
    return Interval(-x.upper, -x.lower)


def abs_(call: OpCall, function: OpFunction, x: Interval) -> Interval:
    straddles = (x.lower < 0) & (x.upper > 0)
    low = torch.where(straddles, torch.zeros_like(x.lower), torch.minimum(x.lower.abs(), x.upper.abs()))
    return Interval(low, torch.maximum(x.lower.abs(), x.upper.abs()))


def sub(call: OpCall, function: OpFunction, a: Value, b: Value) -> Interval:
    a, b = _interval(a), _interval(b)
    return Interval(a.lower - b.upper, a.upper - b.lower)


def mul(call: OpCall, function: OpFunction, a: Value, b: Value) -> Interval:
    if not isinstance(b, Interval):
        return _scale(a, b.to(a.lower.dtype))
    if not isinstance(a, Interval):
        return _scale(b, a.to(b.lower.dtype))
    # Two bounded factors: the extremes of a bilinear function lie at the corners.
    products = torch.stack(torch.broadcast_tensors(
        a.lower * b.lower, a.lower * b.upper, a.upper * b.lower, a.upper * b.upper
    ))  # fmt: skip
    return Interval(products.amin(0), products.amax(0))


def div(call: OpCall, function: OpFunction, a: Interval, b: torch.Tensor) -> Interval:
    return _scale(a, 1.0 / b.to(a.lower.dtype))


def _affine(
    linear: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    x: Interval,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
) -> Interval:
    """``linear(x, W, b)`` over a box: centre through ``W`` with the bias, radius through ``|W|`` without."""
    weight = weight.to(x.lower.dtype)
    bias = None if bias is None else bias.to(x.lower.dtype)
    return Interval.around(linear(x.center, weight, bias), linear(x.radius, weight.abs(), None).abs())


def conv(
    call: OpCall, function: OpFunction, x: Interval, w: torch.Tensor, b: torch.Tensor | None = None
) -> Interval:
    return _affine(lambda v, weight, bias: function(call, v, weight, bias), x, w, b)


def _bilinear(call: OpCall, function: OpFunction, a: Value, b: Value, c: torch.Tensor | None) -> Interval:
    """MatMul or Gemm with one constant factor: the constant plays the weight, on either side."""
    if isinstance(a, Interval):
        return _affine(lambda v, weight, bias: function(call, v, weight, *_given(bias)), a, b, c)
    return _affine(lambda v, weight, bias: function(call, weight, v, *_given(bias)), b, a, c)


def _given(bias: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    return () if bias is None else (bias,)


def gemm(call: OpCall, function: OpFunction, a: Value, b: Value, c: torch.Tensor | None = None) -> Interval:
    return _bilinear(call, function, a, b, c)


def matmul(call: OpCall, function: OpFunction, a: Value, b: Value) -> Interval:
    return _bilinear(call, function, a, b, None)


def batch_norm(
    call: OpCall,
    function: OpFunction,
    x: Interval,
    scale: torch.Tensor,
    bias: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
) -> Interval:
    # Inference-mode BatchNormalization is x * s + t per channel; s may be negative (a negative scale).
    dtype = x.lower.dtype
    scale, bias, mean, var = (t.to(dtype) for t in (scale, bias, mean, var))
    factor = scale / torch.sqrt(var + call.attr("epsilon", 1e-5))
    shape = (1, -1) + (1,) * (x.lower.dim() - 2)
    return Interval.around(
        batch_normalization(call, x.center, scale, bias, mean, var), x.radius * factor.abs().reshape(shape)
    )


def _training_refusal(call: OpCall) -> str | None:
    return "BatchNormalization (training mode)" if call.attr("training_mode", 0) else None


def _log_softmax_bounds(x: Interval, dim: int) -> Interval:
    """Bounds of ``z_i - logsumexp(z)``: increasing in ``z_i``, decreasing in every other ``z_j``, so the
    lower bound takes ``z_i = l_i`` against ``z_j = u_j`` and the upper bound the reverse."""
    low, high = x.lower.movedim(dim, -1), x.upper.movedim(dim, -1)
    eye = torch.eye(low.shape[-1], dtype=torch.bool, device=low.device)
    # [..., i, j]: row i holds the competitors of class i with class i itself at its own corner.
    against_high = torch.where(eye, low.unsqueeze(-1), high.unsqueeze(-2))
    against_low = torch.where(eye, high.unsqueeze(-1), low.unsqueeze(-2))
    lower = low - torch.logsumexp(against_high, dim=-1)
    upper = high - torch.logsumexp(against_low, dim=-1)
    return Interval(lower.movedim(-1, dim), upper.movedim(-1, dim))


def _softmax_axis(call: OpCall, x: Interval) -> tuple[Interval, int, torch.Size]:
    """The input as the op normalises it (before opset 13: coerced to 2-D at ``axis``) and its axis."""
    shape = x.lower.shape
    if call.opset >= 13:
        return x, call.attr("axis", -1) % x.lower.dim(), shape
    axis = call.attr("axis", 1) % max(x.lower.dim(), 1)
    rows = math.prod(shape[:axis])
    return Interval(x.lower.reshape(rows, -1), x.upper.reshape(rows, -1)), 1, shape


def log_softmax(call: OpCall, function: OpFunction, x: Interval) -> Interval:
    coerced, axis, shape = _softmax_axis(call, x)
    bounds = _log_softmax_bounds(coerced, axis)
    return Interval(bounds.lower.reshape(shape), bounds.upper.reshape(shape))


def softmax(call: OpCall, function: OpFunction, x: Interval) -> Interval:
    logs = log_softmax(call, function, x)
    return Interval(logs.lower.exp(), logs.upper.exp())


_MONOTONE_SHAPE_OPS = {
    "Identity": (), "Flatten": (), "Transpose": (), "Reshape": (1,), "Squeeze": (1,), "Unsqueeze": (1,),
    "Concat": (), "Slice": (1, 2, 3, 4), "Gather": (1,), "Pad": (1, 2, 3), "Expand": (1,), "Tile": (1,),
    "Split": (1,), "DepthToSpace": (), "SpaceToDepth": (), "Dropout": (1, 2),
}  # fmt: skip
"""Ops whose outputs copy input elements (or constants): nondecreasing in the data input."""

_MONOTONE_REDUCTIONS = {
    "MaxPool": (), "AveragePool": (), "GlobalAveragePool": (), "GlobalMaxPool": (),
    "ReduceMean": (1,), "ReduceSum": (1,), "ReduceMax": (1,), "ReduceMin": (1,),
    "Add": (), "Sum": (), "Max": (), "Min": (), "Where": (0,),
}  # fmt: skip
"""Pooling, sums and maxima with nonnegative weights: nondecreasing in every bounded input."""

_INCREASING_ACTIVATIONS = {
    "Relu": None, "Sigmoid": None, "Tanh": None, "Softplus": None, "Softsign": None, "Exp": None,
    "Log": None, "Sqrt": None, "Erf": None, "Floor": None, "Ceil": None, "Sign": None,
    "Elu": _negative_attribute("Elu", "alpha"), "Celu": _negative_attribute("Celu", "alpha"),
    "Selu": _negative_attribute("Selu", "alpha", "gamma"),
    "HardSigmoid": _negative_attribute("HardSigmoid", "alpha"),
    "ThresholdedRelu": _negative_attribute("ThresholdedRelu", "alpha"),
}  # fmt: skip
"""Elementwise functions nondecreasing on their domain (for the attribute values ``refuse`` accepts)."""

BOUND_RULES: dict[str, BoundRule] = {
    **{op: BoundRule(monotone, constant_inputs=c) for op, c in _MONOTONE_SHAPE_OPS.items()},
    **{op: BoundRule(monotone, constant_inputs=c) for op, c in _MONOTONE_REDUCTIONS.items()},
    **{op: BoundRule(monotone, refuse=r) for op, r in _INCREASING_ACTIVATIONS.items()},
    "Clip": BoundRule(monotone, constant_inputs=(1, 2)),
    "Cast": BoundRule(float_cast, refuse=_cast_refusal),
    "LeakyRelu": BoundRule(leaky_relu),
    "PRelu": BoundRule(prelu, constant_inputs=(1,)),
    "Neg": BoundRule(neg),
    "Abs": BoundRule(abs_),
    "Sub": BoundRule(sub),
    "Mul": BoundRule(mul),
    "Div": BoundRule(div, constant_inputs=(1,)),
    "Conv": BoundRule(conv, constant_inputs=(1, 2)),
    "ConvTranspose": BoundRule(conv, constant_inputs=(1, 2)),
    "Gemm": BoundRule(gemm, constant_inputs=(2,), one_constant_of=(0, 1)),
    "MatMul": BoundRule(matmul, one_constant_of=(0, 1)),
    "BatchNormalization": BoundRule(batch_norm, constant_inputs=(1, 2, 3, 4), refuse=_training_refusal),
    "Softmax": BoundRule(softmax),
    "LogSoftmax": BoundRule(log_softmax),
}
"""Every ONNX operator (default domain) with an interval rule."""

SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})
"""Ops that read only a tensor's shape: their output does not depend on the input's values."""
