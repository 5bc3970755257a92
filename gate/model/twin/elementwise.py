"""Element-wise and reduction operators: arithmetic, activations, comparisons, casts, reductions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from onnx import TensorProto

from gate.model.twin.call import OpCall, OpFunction, ints


def _binary(fn: OpFunction) -> OpFunction:
    return lambda call, a, b: fn(a, b)


def _unary(fn: OpFunction) -> OpFunction:
    return lambda call, x: fn(x)


def div(call: OpCall, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # ONNX integer division truncates towards zero, like C.
    if not a.is_floating_point() and not b.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


def pow_(call: OpCall, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.pow(x, y).to(x.dtype)


def leaky_relu(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, call.attr("alpha", 0.01))


def elu(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    return F.elu(x, call.attr("alpha", 1.0))


def hard_sigmoid(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(call.attr("alpha", 0.2) * x + call.attr("beta", 0.5), 0.0, 1.0)


# ONNX's defaults, as float32 constants (the spec writes them to 24 digits).
SELU_ALPHA = 1.67326319217681884765625
SELU_GAMMA = 1.05070102214813232421875


def selu(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    alpha, gamma = call.attr("alpha", SELU_ALPHA), call.attr("gamma", SELU_GAMMA)
    # Clamping keeps exp from overflowing on the unused branch, whose inf would turn the gradient into NaN.
    return gamma * torch.where(x > 0, x, alpha * torch.expm1(torch.clamp(x, max=0.0)))


def celu(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    return F.celu(x, call.attr("alpha", 1.0))


def thresholded_relu(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > call.attr("alpha", 1.0), x, torch.zeros_like(x))


def shrink(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    bias, lambd = call.attr("bias", 0.0), call.attr("lambd", 0.5)
    zero = torch.zeros_like(x)
    return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, zero))


def prelu(call: OpCall, x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    # Unidirectional broadcasting: the slope broadcasts to x's shape, never the other way round.
    if torch.broadcast_shapes(x.shape, slope.shape) != x.shape:
        raise call.unsupported(
            f"a slope of shape {tuple(slope.shape)} for an input of shape {tuple(x.shape)}"
        )
    return torch.where(x < 0, slope * x, x)


def is_inf(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    negative, positive = call.attr("detect_negative", 1), call.attr("detect_positive", 1)
    if negative and positive:
        return torch.isinf(x)
    if positive:
        return torch.isposinf(x)
    if negative:
        return torch.isneginf(x)
    return torch.zeros_like(x, dtype=torch.bool)


def gelu(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate=call.attr("approximate", "none"))


def softmax_like(fn: OpFunction) -> OpFunction:
    def apply(call: OpCall, x: torch.Tensor) -> torch.Tensor:
        if call.opset >= 13:
            return fn(x, dim=call.attr("axis", -1))
        # Before opset 13 the input is coerced to 2-D at ``axis`` and normalised over the flattened tail.
        axis = call.attr("axis", 1) % max(x.dim(), 1)
        flat = x.reshape(math.prod(x.shape[:axis]), -1)
        return fn(flat, dim=1).reshape(x.shape)

    return apply


def clip(
    call: OpCall, x: torch.Tensor, low: torch.Tensor | None = None, high: torch.Tensor | None = None
) -> torch.Tensor:
    if call.opset < 11:
        low_value, high_value = call.attr("min"), call.attr("max")
        return torch.clamp(x, low_value, high_value)
    return torch.clamp(x, low, high)


TORCH_DTYPES: dict[int, torch.dtype] = {
    TensorProto.FLOAT: torch.float32,
    TensorProto.DOUBLE: torch.float64,
    TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16,
    TensorProto.INT8: torch.int8,
    TensorProto.INT16: torch.int16,
    TensorProto.INT32: torch.int32,
    TensorProto.INT64: torch.int64,
    TensorProto.UINT8: torch.uint8,
    TensorProto.BOOL: torch.bool,
}


def cast(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    target = TORCH_DTYPES.get(call.attr("to"))
    if target is None:
        raise call.unsupported(f"casting to ONNX type {call.attr('to')}")
    return x.to(target)


def cast_like(call: OpCall, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x.to(like.dtype)


def variadic(fn: OpFunction) -> OpFunction:
    def apply(call: OpCall, *xs: torch.Tensor) -> torch.Tensor:
        result = xs[0]
        for x in xs[1:]:
            result = fn(result, x)
        return result

    return apply


def where(call: OpCall, condition: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(condition, a, b)


def _reduction_axes(call: OpCall, x: torch.Tensor, axes: torch.Tensor | None) -> list[int] | None:
    """Axes to reduce (``None`` = all); attribute before the opset where they became an input."""
    listed = ints(axes) if axes is not None else call.attr("axes")
    if not listed:
        return [] if call.attr("noop_with_empty_axes", 0) else None
    return [a % x.dim() for a in listed]


def reduction(kind: str) -> OpFunction:
    def apply(call: OpCall, x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
        dims = _reduction_axes(call, x, axes)
        keep = bool(call.attr("keepdims", 1))
        if dims == []:
            return x
        dims = list(range(x.dim())) if dims is None else dims
        if kind == "mean":
            return x.mean(dim=dims, keepdim=keep)
        if kind == "sum":
            return x.sum(dim=dims, keepdim=keep)
        if kind == "sum_square":
            return (x * x).sum(dim=dims, keepdim=keep)
        if kind == "l2":
            return (x * x).sum(dim=dims, keepdim=keep).sqrt()
        if kind == "prod":
            result = x
            for dim in sorted(dims, reverse=True):
                result = result.prod(dim=dim, keepdim=keep)
            return result
        return (
            torch.amax(x, dim=dims, keepdim=keep) if kind == "max" else torch.amin(x, dim=dims, keepdim=keep)
        )

    return apply


def arg_extreme(fn: OpFunction) -> OpFunction:
    def apply(call: OpCall, x: torch.Tensor) -> torch.Tensor:
        if call.attr("select_last_index", 0):
            raise call.unsupported("select_last_index=1")
        return fn(x, dim=call.attr("axis", 0), keepdim=bool(call.attr("keepdims", 1)))

    return apply


OPS: dict[str, OpFunction] = {
    "Add": _binary(torch.add),
    "Sub": _binary(torch.sub),
    "Mul": _binary(torch.mul),
    "Div": div,
    "Pow": pow_,
    "MatMul": _binary(torch.matmul),
    "Equal": _binary(torch.eq),
    "Less": _binary(torch.lt),
    "LessOrEqual": _binary(torch.le),
    "Greater": _binary(torch.gt),
    "GreaterOrEqual": _binary(torch.ge),
    "And": _binary(torch.logical_and),
    "Or": _binary(torch.logical_or),
    "Not": _unary(torch.logical_not),
    "Where": where,
    "Max": variadic(torch.maximum),
    "Min": variadic(torch.minimum),
    "Sum": variadic(torch.add),
    "Neg": _unary(torch.neg),
    "Abs": _unary(torch.abs),
    "Sqrt": _unary(torch.sqrt),
    "Reciprocal": _unary(torch.reciprocal),
    "Exp": _unary(torch.exp),
    "Log": _unary(torch.log),
    "Erf": _unary(torch.erf),
    "Sign": _unary(torch.sign),
    "Floor": _unary(torch.floor),
    "Ceil": _unary(torch.ceil),
    # ONNX rounds halves to even, as torch.round does.
    "Round": _unary(torch.round),
    "Sin": _unary(torch.sin),
    "Cos": _unary(torch.cos),
    "Relu": _unary(F.relu),
    "Sigmoid": _unary(torch.sigmoid),
    "Tanh": _unary(torch.tanh),
    "Softplus": _unary(F.softplus),
    "HardSwish": _unary(F.hardswish),
    "LeakyRelu": leaky_relu,
    "Elu": elu,
    "HardSigmoid": hard_sigmoid,
    "Gelu": gelu,
    "Selu": selu,
    "Celu": celu,
    "Mish": _unary(F.mish),
    "Softsign": _unary(F.softsign),
    "ThresholdedRelu": thresholded_relu,
    "Shrink": shrink,
    "PRelu": prelu,
    "IsNaN": _unary(torch.isnan),
    "IsInf": is_inf,
    "Softmax": softmax_like(torch.softmax),
    "LogSoftmax": softmax_like(torch.log_softmax),
    "Clip": clip,
    "Cast": cast,
    "CastLike": cast_like,
    "ReduceMean": reduction("mean"),
    "ReduceSum": reduction("sum"),
    "ReduceSumSquare": reduction("sum_square"),
    "ReduceL2": reduction("l2"),
    "ReduceProd": reduction("prod"),
    "ReduceMax": reduction("max"),
    "ReduceMin": reduction("min"),
    "ArgMax": arg_extreme(torch.argmax),
    "ArgMin": arg_extreme(torch.argmin),
}
