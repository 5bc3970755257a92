"""Deterministic certificates by interval bound propagation (IBP) through the deployed ONNX graph.

Gowal et al., "On the Effectiveness of Interval Bound Propagation for Training Verifiably Robust Models"
(2018). A box around each input is pushed through the graph node by node, with the twin's graph walking,
attribute decoding and initializers (gate/model/twin) and one interval rule per operator
(:mod:`gate.certify.bound_ops`). A sample is verified when the lower bound of its true logit beats the
upper bound of every other logit: no input in the box, and so none in the L-inf ball (or in the L2 ball the
box contains), can change the prediction.

Soundness and rounding: bounds are computed in float64 for the exact (real-arithmetic) network the graph
describes, then widened outward by :data:`ROUNDING_SLACK` and rounded outward to float32, so that they
also hold for the float32 network ONNX Runtime evaluates (whose rounding error is orders of magnitude
below the slack on the models gate tests; docs/certified.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import torch

from gate.certify.bound_ops import (
    BOUND_RULES,
    SHAPE_ONLY_OPS,
    Interval,
    UnsupportedBoundOps,
    Value,
)
from gate.errors import CheckError, ModelError
from gate.model.twin.graph import ParsedNode, initializer_tensors, parse_nodes

__all__ = [
    "ROUNDING_SLACK",
    "IntervalBounds",
    "UnsupportedBoundOps",
    "bound_logits",
    "bound_margins",
    "bound_support",
    "verified",
    "verify",
]

ROUNDING_SLACK = 1e-5
"""Relative widening of the output bounds (times ``1 + max |bound|`` of the sample) that covers the
difference between the exact network and the float32 one ONNX Runtime evaluates."""

_DEFAULT_DOMAINS = ("", "ai.onnx")
_FINAL_NORMALISERS = frozenset({"Softmax", "LogSoftmax"})
"""A final op that keeps the argmax: bounding stops before it, at the logits."""


@dataclass(frozen=True)
class _FinalAffine:
    """The last layer ``logits = h @ weight + bias``, for the margin's elision of the last layer."""

    hidden: str
    weight: torch.Tensor  # [features, classes]
    bias: torch.Tensor | None  # [classes]


class IntervalBounds:
    """A graph prepared once for bound propagation; call :meth:`bounds` per batch.

    Args:
        graph: The deployed ONNX model, with one input and one output (the one the twin runs).
    """

    def __init__(self, graph: onnx.ModelProto) -> None:
        self._nodes = parse_nodes(graph)
        self._initializers = {name: _as_float64(t) for name, t in initializer_tensors(graph).items()}
        inputs = [value.name for value in graph.graph.input if value.name not in self._initializers]
        if len(inputs) != 1 or len(graph.graph.output) != 1:
            raise ModelError(
                f"interval bounds need a graph with one input and one output, found inputs {inputs} "
                f"and outputs {[value.name for value in graph.graph.output]}"
            )
        self.input_name, self.output_name = inputs[0], graph.graph.output[0].name
        self._domains = {
            id(parsed): node.domain for parsed, node in zip(self._nodes, graph.graph.node, strict=True)
        }
        self._producers = {name: node for node in self._nodes for name in node.outputs if name}

    def target(self, output: str | None = None) -> str:
        """The value that is bounded: ``output``, else the graph's output, or the input of a final Softmax
        or LogSoftmax (the logits: both keep the argmax, so the margins and the verdict are the same)."""
        if output is not None:
            if output not in self._producers and output != self.input_name:
                raise ModelError(f"the graph computes no value named {output!r}")
            return output
        name = self.output_name
        producer = self._producers.get(name)
        if producer is not None and producer.call.op_type in _FINAL_NORMALISERS:
            return producer.inputs[0]
        return name

    def _needed(self, target: str) -> list[ParsedNode]:
        """The nodes ``target`` depends on, in graph order."""
        wanted, pending = set(), [target]
        while pending:
            node = self._producers.get(pending.pop())
            if node is not None and id(node) not in wanted:
                wanted.add(id(node))
                pending += [name for name in node.inputs if name]
        return [node for node in self._nodes if id(node) in wanted]

    def unsupported(self, output: str | None = None) -> list[str]:
        """What stops propagation to ``target(output)``: op types without a rule, or a variant of one
        (``"MatMul (both factors depend on the model's input)"``); ``[]`` when every needed node has a rule."""
        dependent = {self.input_name}
        missing: set[str] = set()
        for node in self._needed(self.target(output)):
            domain = self._domains[id(node)]
            flags = [name in dependent for name in node.inputs]
            if not any(flags) or node.call.op_type in SHAPE_ONLY_OPS:
                # Evaluated exactly, as the twin runs it: constants, and shapes of bounded tensors.
                if node.function is None:
                    missing.add(_qualified(node.call.op_type, domain))
                continue
            dependent.update(name for name in node.outputs if name)
            problem = _rule_problem(node, domain, flags)
            if problem is not None:
                missing.add(problem)
        return sorted(missing)

    def bounds(self, lower: torch.Tensor, upper: torch.Tensor, output: str | None = None) -> Interval:
        """Float64 bounds of ``target(output)`` for inputs in ``[lower, upper]`` (``[B, *input_shape]``),
        before any rounding slack; raises :class:`UnsupportedBoundOps` naming what has no rule."""
        return self._propagate(_input_box(lower, upper), self.target(output))[self.target(output)]

    def logits(
        self, lower: torch.Tensor, upper: torch.Tensor, output: str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What :func:`bound_logits` returns, without preparing the graph again."""
        return _round_outward(self.bounds(lower, upper, output))

    def verify(
        self, lower: torch.Tensor, upper: torch.Tensor, labels: torch.Tensor, output: str | None = None
    ) -> torch.Tensor:
        """What :func:`verify` returns, without preparing the graph again."""
        return self.margins(lower, upper, labels, output).amin(1) > 0

    def _propagate(self, box: Interval, target: str) -> dict[str, Value]:
        missing = self.unsupported(target)
        if missing:
            raise UnsupportedBoundOps(missing)
        device = box.lower.device
        values: dict[str, Value] = {n: t.to(device) for n, t in self._initializers.items()}
        values[self.input_name] = box
        for node in self._needed(target):
            args = [values[name] if name else None for name in node.inputs]
            results = _apply(node, args)
            for name, value in zip(node.outputs, results, strict=False):
                if name:
                    values[name] = value
        if isinstance(values[target], Interval):
            _check_finite(values[target], target)
        return values

    def final_affine(self, output: str | None = None) -> _FinalAffine | None:
        """The last layer when it is affine with constant weights (Gemm, MatMul, MatMul + Add), else None."""
        node = self._producers.get(self.target(output))
        if node is None:
            return None
        op, bias = node.call.op_type, None
        if op == "Add":
            constants = [name for name in node.inputs if name in self._initializers]
            others = [name for name in node.inputs if name not in self._initializers]
            if len(constants) != 1 or len(others) != 1 or others[0] not in self._producers:
                return None
            bias, node = self._initializers[constants[0]], self._producers[others[0]]
            op = node.call.op_type
        if op not in ("Gemm", "MatMul") or node.inputs[1] not in self._initializers:
            return None
        weight = self._initializers[node.inputs[1]]
        if op == "Gemm":
            if node.call.attr("transA", 0) or bias is not None:
                return None
            weight = weight.t() if node.call.attr("transB", 0) else weight
            weight = float(node.call.attr("alpha", 1.0)) * weight
            given = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
            if given is not None:
                if given not in self._initializers:
                    return None
                bias = float(node.call.attr("beta", 1.0)) * self._initializers[given]
        if weight.dim() != 2 or (bias is not None and bias.numel() not in (1, weight.shape[1])):
            return None
        bias = None if bias is None else bias.reshape(-1).expand(weight.shape[1])
        return _FinalAffine(node.inputs[0], weight, bias)

    def margins(
        self, lower: torch.Tensor, upper: torch.Tensor, labels: torch.Tensor, output: str | None = None
    ) -> torch.Tensor:
        """``[B, K]`` lower bounds of ``logit[y] - logit[j]`` (``+inf`` at ``j = y``), widened by the slack.

        With an affine last layer, the margins are bounded through it (Gowal et al.'s elision of the last
        layer: ``(W_y - W_j)·h`` is bounded as one linear map of the penultimate box, which is never looser
        and usually much tighter than subtracting the two logits' bounds); otherwise from the logits' box.
        """
        target = self.target(output)
        affine = self.final_affine(output)
        labels = labels.to(lower.device).long()
        if affine is None:
            logits = self._propagate(_input_box(lower, upper), target)[target]
            return _widen_margins(_margins_from_box(logits, labels), logits)
        values = self._propagate(_input_box(lower, upper), target)
        hidden, logits = _interval_of(values[affine.hidden]), values[target]
        if hidden.lower.dim() != 2:
            return _widen_margins(_margins_from_box(logits, labels), logits)
        return _widen_margins(_elided_margins(hidden, affine, labels), logits)


def _rule_problem(node: ParsedNode, domain: str, dependent: list[bool]) -> str | None:
    op = node.call.op_type
    rule = BOUND_RULES.get(op) if domain in _DEFAULT_DOMAINS else None
    if rule is None or node.function is None:
        return _qualified(op, domain)
    if rule.refuse is not None:
        refusal = rule.refuse(node.call)
        if refusal is not None:
            return refusal
    fed = [i for i in rule.constant_inputs if i < len(dependent) and dependent[i]]
    if fed:
        return f"{op} (input {', '.join(map(str, fed))} depends on the model's input)"
    if rule.one_constant_of and all(dependent[i] for i in rule.one_constant_of if i < len(dependent)):
        return f"{op} (both factors depend on the model's input)"
    return None


def _qualified(op: str, domain: str) -> str:
    return op if domain in _DEFAULT_DOMAINS else f"{domain}::{op}"


def _apply(node: ParsedNode, args: list[Value | None]) -> tuple[Value, ...]:
    """One node: exact on constants (the twin's function), shape-only on a box, else its interval rule."""
    call, function = node.call, node.function
    bounded = [a for a in args if isinstance(a, Interval)]
    try:
        if not bounded:
            result = function(call, *args)
            if not isinstance(result, tuple):
                return (_as_float64(result),)
            return tuple(_as_float64(r) for r in result)
        elif call.op_type in SHAPE_ONLY_OPS:
            result = function(call, *(a.lower if isinstance(a, Interval) else a for a in args))
        else:
            result = BOUND_RULES[call.op_type].propagate(call, function, *args)
    except (ModelError, CheckError):
        raise
    except Exception as error:
        raise CheckError(
            f"interval bounds failed at {call.op_type} node {call.name!r}: {type(error).__name__}: {error}"
        ) from error
    return result if isinstance(result, tuple) else (result,)


def _as_float64(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.double() if tensor.is_floating_point() else tensor


def _interval_of(value: Value) -> Interval:
    return value if isinstance(value, Interval) else Interval.point(value)


def _input_box(lower: torch.Tensor, upper: torch.Tensor) -> Interval:
    if lower.shape != upper.shape:
        raise CheckError(f"input bounds differ in shape: {tuple(lower.shape)} and {tuple(upper.shape)}")
    box = Interval(lower.detach().double(), upper.detach().double())
    if not bool(torch.isfinite(box.lower).all() and torch.isfinite(box.upper).all()):
        raise CheckError("input bounds must be finite")
    if bool((box.lower > box.upper).any()):
        raise CheckError("input bounds must satisfy lower <= upper everywhere")
    return box


def _check_finite(bounds: Interval, name: str) -> None:
    if bool(torch.isnan(bounds.lower).any() or torch.isnan(bounds.upper).any()):
        raise CheckError(
            f"interval bounds of {name!r} are NaN (an op left its domain, e.g. Log of a negative)"
        )


def _slack(bounds: Interval) -> torch.Tensor:
    """``[B, 1]`` per-sample widening: :data:`ROUNDING_SLACK` times ``1 + max |bound|``."""
    extreme = torch.maximum(bounds.lower.abs(), bounds.upper.abs()).reshape(bounds.lower.shape[0], -1)
    finite = torch.where(torch.isfinite(extreme), extreme, torch.zeros_like(extreme))
    return ROUNDING_SLACK * (1 + finite.amax(1, keepdim=True))


def _round_outward(bounds: Interval) -> tuple[torch.Tensor, torch.Tensor]:
    """Widen by the slack, then round to float32 away from the box's inside."""
    slack = _slack(bounds).reshape((-1,) + (1,) * (bounds.lower.dim() - 1))
    return _float32_below(bounds.lower - slack), -_float32_below(-(bounds.upper + slack))


def _float32_below(values: torch.Tensor) -> torch.Tensor:
    """The largest float32 at most ``values`` (float64): rounding to nearest may round up by half an ulp."""
    rounded = values.float()
    below = torch.nextafter(rounded, torch.full_like(rounded, -torch.inf))
    return torch.where(rounded.double() > values, below, rounded)


def _margins_from_box(logits: Interval, labels: torch.Tensor) -> torch.Tensor:
    true_lower = logits.lower.gather(1, labels[:, None])
    margins = true_lower - logits.upper
    return margins.scatter(1, labels[:, None], torch.inf)


def _elided_margins(hidden: Interval, affine: _FinalAffine, labels: torch.Tensor) -> torch.Tensor:
    """``min over h in the box of (W_y - W_j)·h + b_y - b_j``, one distinct label at a time."""
    weight = affine.weight.to(hidden.lower.device)
    margins = torch.empty(hidden.lower.shape[0], weight.shape[1], dtype=torch.float64, device=weight.device)
    for label in labels.unique().tolist():
        rows = labels == label
        difference = weight[:, label : label + 1] - weight  # [features, classes]
        center, radius = hidden.center[rows], hidden.radius[rows]
        bound = center @ difference - radius @ difference.abs()
        if affine.bias is not None:
            bias = affine.bias.to(weight.device)
            bound = bound + (bias[label] - bias)
        margins[rows] = bound
    return margins.scatter(1, labels[:, None], torch.inf)


def _widen_margins(margins: torch.Tensor, logits: Value) -> torch.Tensor:
    """A margin is a difference of two logits, so it loses twice the logits' slack."""
    slack = _slack(_interval_of(logits)) if isinstance(logits, Interval) else 0.0
    return _float32_below(margins - 2 * slack)


def bound_logits(
    graph: onnx.ModelProto, lower: torch.Tensor, upper: torch.Tensor, *, output: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 elementwise bounds of the graph's logits for every input in ``[lower, upper]``.

    Args:
        graph: The deployed ONNX model.
        lower, upper: ``[B, *input_shape]`` bounds in the model's input space (after preprocessing).
        output: An inner value to bound instead; by default the graph's output, or the input of a final
            Softmax/LogSoftmax (see :meth:`IntervalBounds.target`).

    Returns:
        ``(lower, upper)`` of the bounded value, widened by :data:`ROUNDING_SLACK` and rounded outward.

    Raises:
        UnsupportedBoundOps: the graph has ops (or variants) without an interval rule; names them.
    """
    return IntervalBounds(graph).logits(lower, upper, output)


def bound_margins(
    graph: onnx.ModelProto,
    lower: torch.Tensor,
    upper: torch.Tensor,
    labels: torch.Tensor,
    *,
    output: str | None = None,
) -> torch.Tensor:
    """``[B, K]`` float32 lower bounds of ``logit[y] - logit[j]`` (``+inf`` at ``j = y``), through the last
    affine layer where there is one (:meth:`IntervalBounds.margins`)."""
    return IntervalBounds(graph).margins(lower, upper, labels, output)


def verify(
    graph: onnx.ModelProto,
    lower: torch.Tensor,
    upper: torch.Tensor,
    labels: torch.Tensor,
    *,
    output: str | None = None,
) -> torch.Tensor:
    """``[B]`` bool: every margin's lower bound is positive (the tighter test, with the last layer elided)."""
    return IntervalBounds(graph).verify(lower, upper, labels, output)


def verified(lower: torch.Tensor, upper: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: ``lower[y] - max_{j != y} upper[j] > 0`` for logit bounds ``[B, K]``."""
    labels = labels.to(lower.device).long()
    margins = _margins_from_box(Interval(lower.double(), upper.double()), labels)
    return margins.amin(1) > 0


def bound_support(graph: onnx.ModelProto, *, output: str | None = None) -> list[str]:
    """Op types (or variants, with the reason in brackets) the bounded value needs and no rule covers;
    ``[]`` when bound propagation can run. Nodes after the bounded value (a final Softmax) do not count."""
    return IntervalBounds(graph).unsupported(output)
