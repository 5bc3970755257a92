"""Straight-through (BPDA) versions of the ops that hide a model's input gradient, and where a graph has them.

A model that rounds, binarises, casts to an integer or quantises its input has a gradient of zero almost
everywhere, so gradient attacks stall and overstate its robustness. Athalye, Carlini and Wagner (2018),
"Obfuscated Gradients Give a False Sense of Security" (BPDA, section 4.1), attack such a model by
keeping the forward pass exact and replacing each non-differentiable step by a differentiable
approximation in the backward pass; for a step that approximates the identity (rounding, quantising) that
approximation is the identity itself, the straight-through estimator (Bengio, Léonard and Courville 2013).
Here, with ``exact - (relaxed.detach() - relaxed)`` so that the forward values are the exact ones:

* ``Round``, ``Floor``, ``Ceil``, ``Sign``: d/dx = 1.
* ``Cast`` of a float to an integer type: the truncated value stays in float (so that a later Cast back
  to float keeps the gradient) and d/dx = 1. Every Cast to an integer type on the input's path does
  this, so integer values there are carried as float; an integer ``Div`` among them still truncates
  (with the true quotient's gradient). Other integer-only semantics (overflow, wrap-around) are not
  reproduced in float; the twin's verification against the session is what catches such a graph.
* ``QuantizeLinear``: the levels stay in float with the rounding treated as the identity, so
  d/dx = 1/scale inside the integer range and 0 where the value saturates (the saturation is a true
  clamp); the following ``DequantizeLinear`` multiplies by the scale, so the pair passes d/dx = 1.
* a comparison ``a > b`` (``>=``, ``<``, ``<=``) whose result becomes data, through a Cast to float or a
  Where choosing between two values that do not depend on the input: its result is 1.0/0.0 in float with
  the gradient of ``a - b`` (``b - a`` for ``<``), the straight-through estimator of a step. A Where then
  selects exactly and adds ``(a - b)·dc`` for its condition ``c``, the product rule of ``b + c·(a - b)``
  with that estimator: the gradient moves the input towards the branch that raises the loss. A Where
  whose branches depend on the input is left alone: its gradient flows through the chosen branch and is
  not hidden (a ReLU written as ``Where(x > 0, x, 0)`` keeps its true gradient). ``Not``, ``And`` and
  ``Or`` on such results compute ``1 - c``, ``c1·c2`` and ``c1 + c2 - c1·c2``: the same 0/1 values.

Only data that depends on the graph input counts: ``Shape`` and ``Size`` start no dependence, so a Cast
or Floor in shape arithmetic is neither reported nor changed. A twin built with straight-through ops is
not the model's gradient but an attack surrogate; its forward gives the plain twin's values, which gate
verifies against the session.
"""

from __future__ import annotations

import onnx
import torch
from onnx import TensorProto

from gate.model.twin import elementwise
from gate.model.twin.call import OpCall, OpFunction
from gate.model.twin.quantize_ops import quantised_levels

NON_DIFFERENTIABLE: dict[str, str] = {
    "Round": "rounding is piecewise constant: its gradient is zero almost everywhere",
    "Floor": "flooring is piecewise constant: its gradient is zero almost everywhere",
    "Ceil": "ceiling is piecewise constant: its gradient is zero almost everywhere",
    "Sign": "the sign is piecewise constant: its gradient is zero almost everywhere",
    "Cast": "a cast to an integer type has no gradient: integers are not differentiable",
    "QuantizeLinear": "quantising rounds to integer levels, which have no gradient",
    "Greater": "a comparison turned into data is a step function: its gradient is zero almost everywhere",
    "GreaterOrEqual": "a comparison turned into data is a step function: its gradient is zero almost everywhere",
    "Less": "a comparison turned into data is a step function: its gradient is zero almost everywhere",
    "LessOrEqual": "a comparison turned into data is a step function: its gradient is zero almost everywhere",
}
"""Op types that hide the input gradient, with the reason for reports (a Cast is reported ``Cast to int64``)."""

_ROUNDING = {"Round": torch.round, "Floor": torch.floor, "Ceil": torch.ceil, "Sign": torch.sign}
# Each comparison with the direction of its step: greater-like ones rise with a - b, less-like with b - a.
_COMPARISONS = {
    "Greater": (torch.gt, 1.0),
    "GreaterOrEqual": (torch.ge, 1.0),
    "Less": (torch.lt, -1.0),
    "LessOrEqual": (torch.le, -1.0),
}
_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
# Their outputs depend on the input's shape, not on its values.
_SHAPE_ONLY = {"Shape", "Size"}
# Ops that carry a comparison's result on unchanged (or combine such results) to where it becomes data.
_CARRIERS = {"Not", "And", "Or", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Expand"}
_CARRIERS |= {"Transpose", "Slice", "Gather", "Concat", "Tile"}


def _through(exact: torch.Tensor, relaxed: torch.Tensor) -> torch.Tensor:
    """``exact``'s values with ``relaxed``'s gradient.

    Subtracting an exact +0 keeps every value bit for bit, the sign of a zero included; an infinite
    ``relaxed`` (whose difference would be NaN) gets no gradient instead.
    """
    return exact - torch.nan_to_num(relaxed.detach() - relaxed, nan=0.0, posinf=0.0, neginf=0.0)


def _rounding(fn: OpFunction) -> OpFunction:
    return lambda call, x: _through(fn(x), x)


def cast(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    """A Cast that keeps a float input's integer values in float, so a Cast back keeps the gradient."""
    target = elementwise.TORCH_DTYPES.get(call.attr("to"))
    if target is None or target.is_floating_point or target == torch.bool or not x.is_floating_point():
        return elementwise.cast(call, x)
    return _through(x.to(target).to(x.dtype), x)


def _comparison(fn: OpFunction, direction: float) -> OpFunction:
    def apply(call: OpCall, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if not (a.is_floating_point() or b.is_floating_point()):
            return fn(a, b)
        dtype = a.dtype if a.is_floating_point() else b.dtype
        return _through(fn(a, b).to(dtype), direction * (a - b))

    return apply


def integer_div(call: OpCall, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """An integer Div on integers carried in float: truncated as ONNX does, with the true quotient's gradient."""
    if not (a.is_floating_point() or b.is_floating_point()):
        return elementwise.div(call, a, b)
    quotient = a / b
    return _through(torch.trunc(quotient), quotient)


def _as_bool(condition: torch.Tensor) -> torch.Tensor:
    return condition if condition.dtype == torch.bool else condition != 0


def where(call: OpCall, condition: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A Where whose condition may be a straight-through comparison (1.0/0.0 in float); no gradient added."""
    return torch.where(_as_bool(condition), a, b)


def select(call: OpCall, condition: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A Where between input-independent values: exact, plus ``(a - b)`` times the condition's gradient."""
    selected = torch.where(_as_bool(condition), a, b)
    if not (condition.is_floating_point() and selected.is_floating_point()):
        return selected
    # An infinite branch (a mask) would turn the exact zero below into NaN: it gets no gradient instead.
    jump = torch.nan_to_num((a - b).detach(), nan=0.0, posinf=0.0, neginf=0.0)
    return selected + jump * (condition - condition.detach())


def _logic(name: str) -> OpFunction:
    """Not/And/Or on straight-through comparisons: the same 0/1 values, as differentiable products."""

    def apply(call: OpCall, *xs: torch.Tensor) -> torch.Tensor:
        if not any(x.is_floating_point() for x in xs):
            return elementwise.OPS[name](call, *xs)
        dtype = next(x.dtype for x in xs if x.is_floating_point())
        values = [x.to(dtype) for x in xs]
        if name == "Not":
            return 1 - values[0]
        a, b = values
        return a * b if name == "And" else a + b - a * b

    return apply


def quantize_linear(
    call: OpCall, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None = None
) -> torch.Tensor:
    """QuantizeLinear's levels kept in float, rounded straight through; DequantizeLinear accepts them."""
    levels, _ = quantised_levels(call, x, scale, zero_point, rounding=lambda v: _through(torch.round(v), v))
    return levels


def _element_types(model: onnx.ModelProto) -> dict[str, int]:
    """Each value's ONNX element type where shape inference (or the file) knows it."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, ValueError):
        # A graph shape inference cannot read (or one over 2 GB) still gets the file's own types.
        inferred = model
    graph = inferred.graph
    types = {value.name: value.type.tensor_type.elem_type for value in graph.value_info}
    types.update({value.name: value.type.tensor_type.elem_type for value in [*graph.input, *graph.output]})
    types.update({tensor.name: tensor.data_type for tensor in graph.initializer})
    return types


class _Plan:
    """Walks the graph once: which values depend on the input, and which nodes to run straight through."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.types = _element_types(model)
        initializers = {tensor.name for tensor in model.graph.initializer}
        self.depends = {value.name for value in model.graph.input if value.name not in initializers}
        # value name -> the comparison nodes whose result it carries
        self.carried: dict[str, set[int]] = {}
        self.flagged: set[int] = set()
        self.functions: dict[int, OpFunction] = {}
        self.kinds: dict[int, str] = {}
        self.nodes = list(model.graph.node)
        for index, node in enumerate(self.nodes):
            self._visit(index, node)
        for index in self.flagged:
            op = self.nodes[index].op_type
            self.functions[index] = _comparison(*_COMPARISONS[op])
            self.kinds[index] = op

    def _visit(self, index: int, node: onnx.NodeProto) -> None:
        if node.domain not in ("", "ai.onnx") or node.op_type in _SHAPE_ONLY:
            return
        if not any(name in self.depends for name in node.input):
            return
        self.depends.update(name for name in node.output if name)
        op = node.op_type
        origins = set().union(*(self.carried.get(name, set()) for name in node.input))
        if op in _ROUNDING:
            self._run(index, _rounding(_ROUNDING[op]), op)
        elif op in _COMPARISONS:
            self.carried[node.output[0]] = {index}
        elif op == "Cast":
            self._cast(index, node, origins)
        elif op == "Where":
            self._where(index, node)
        elif op == "QuantizeLinear" and node.input[0] in self.depends:
            self._run(index, quantize_linear, op)
        elif op == "Div" and self.types.get(node.output[0], TensorProto.FLOAT) not in _FLOAT_TYPES:
            # Integers from a straight-through Cast are carried in float: their division must still truncate.
            self._run(index, integer_div)
        elif op in _CARRIERS and origins:
            self.carried.update({name: origins for name in node.output if name})
            if op in ("Not", "And", "Or"):
                self._run(index, _logic(op))

    def _run(self, index: int, function: OpFunction, kind: str | None = None) -> None:
        self.functions[index] = function
        if kind is not None:
            self.kinds[index] = kind

    def _cast(self, index: int, node: onnx.NodeProto, origins: set[int]) -> None:
        target = next((a.i for a in node.attribute if a.name == "to"), TensorProto.FLOAT)
        if target in _FLOAT_TYPES:
            self.flagged |= origins
            return
        if target == TensorProto.BOOL:
            self.carried[node.output[0]] = origins
            return
        self._run(index, cast)
        if origins:
            self.carried[node.output[0]] = origins
        elif self.types.get(node.input[0], TensorProto.FLOAT) in _FLOAT_TYPES:
            name = TensorProto.DataType.Name(target).lower()
            self.kinds[index] = f"Cast to {name}"

    def _where(self, index: int, node: onnx.NodeProto) -> None:
        origins = self.carried.get(node.input[0], set())
        if not origins:
            return
        if node.input[1] in self.depends or node.input[2] in self.depends:
            self._run(index, where)
            return
        self.flagged |= origins
        self._run(index, select)


def non_differentiable_ops(graph: onnx.ModelProto) -> list[str]:
    """The sorted op kinds on the input's path whose gradient is zero or cut (``Cast to int64`` for a Cast).

    Keys of ``NON_DIFFERENTIABLE`` (a Cast's kind starts with ``Cast``); ops on values that do not depend on
    the input, such as shape arithmetic, are not listed.
    """
    return sorted(set(_Plan(graph).kinds.values()))


def straight_through_functions(graph: onnx.ModelProto) -> dict[int, OpFunction]:
    """Node index -> the op function the straight-through twin runs there instead of the exact one."""
    return _Plan(graph).functions
