"""``OnnxTwin``: an ``nn.Module`` that executes an ONNX graph node by node with differentiable torch ops."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from gate.errors import ModelError
from gate.model.twin import elementwise, ml_ops, nn_ops, quantize_ops, shape_ops
from gate.model.twin.call import OpCall, OpFunction
from gate.model.twin.straight_through import straight_through_functions

# One table per domain, built from the op modules, is the whole operator set (see docs/models.md).
OPS: dict[str, OpFunction] = {**elementwise.OPS, **nn_ops.OPS, **shape_ops.OPS, **quantize_ops.OPS}
ML_OPS: dict[str, OpFunction] = ml_ops.OPS

_DEFAULT_DOMAINS = ("", "ai.onnx")
_TORCH_DTYPES = {
    onnx.TensorProto.FLOAT: torch.float32,
    onnx.TensorProto.FLOAT16: torch.float16,
    onnx.TensorProto.DOUBLE: torch.float64,
}


def supported_ops() -> list[str]:
    """The ONNX operator types the twin implements, sorted; ai.onnx.ml ones as ``ai.onnx.ml::Name``."""
    return sorted(OPS) + sorted(f"{ml_ops.DOMAIN}::{op}" for op in ML_OPS)


def _op_function(node: onnx.NodeProto) -> OpFunction | None:
    if node.domain in _DEFAULT_DOMAINS:
        return OPS.get(node.op_type)
    return ML_OPS.get(node.op_type) if node.domain == ml_ops.DOMAIN else None


def _tensor(proto: onnx.TensorProto) -> torch.Tensor:
    array = numpy_helper.to_array(proto)
    return torch.from_numpy(np.array(array, copy=True))


def _attribute(attribute: onnx.AttributeProto) -> Any:
    value = helper.get_attribute_value(attribute)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, onnx.TensorProto):
        return _tensor(value)
    if isinstance(value, list):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    return value


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), 1)


class ParsedNode(NamedTuple):
    """One node with its op function (``None`` where the twin has none) and decoded attributes."""

    function: OpFunction | None
    call: OpCall
    inputs: list[str]
    outputs: list[str]


def parse_nodes(model: onnx.ModelProto) -> list[ParsedNode]:
    """The graph's nodes in order, as the twin and the bound propagation (gate/certify) walk them."""
    opset = _opset(model)
    return [
        ParsedNode(
            _op_function(node),
            OpCall(
                op_type=node.op_type,
                name=node.name or f"{node.op_type}_{index}",
                opset=opset,
                attrs={attribute.name: _attribute(attribute) for attribute in node.attribute},
                num_outputs=sum(1 for name in node.output if name),
            ),
            list(node.input),
            list(node.output),
        )
        for index, node in enumerate(model.graph.node)
    ]


def initializer_tensors(model: onnx.ModelProto) -> dict[str, torch.Tensor]:
    """The graph's initializers by name, as torch tensors."""
    return {initializer.name: _tensor(initializer) for initializer in model.graph.initializer}


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """Operator types in the graph the twin cannot run (custom domains count as unsupported)."""
    missing = {
        node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"
        for node in model.graph.node
        if _op_function(node) is None
    }
    return sorted(missing)


def no_gradient_reason(model: onnx.ModelProto) -> str | None:
    """Why the graph has no gradients at all (a tree ensemble), or None."""
    for node in model.graph.node:
        if node.domain == ml_ops.DOMAIN and node.op_type in ml_ops.NO_GRADIENT:
            return ml_ops.NO_GRADIENT[node.op_type]
    return None


class OnnxTwin(nn.Module):
    """Runs the ONNX graph in PyTorch so that gradients flow from the logits back to the input.

    With ``straight_through`` the ops that hide the input gradient (rounding, integer casts, quantising,
    comparisons made data) keep their exact forward but pass a straight-through gradient (BPDA, see
    ``gate/model/twin/straight_through.py``): an attack surrogate, not the model's own gradient.
    """

    def __init__(self, model: onnx.ModelProto, *, straight_through: bool = False) -> None:
        super().__init__()
        reason = no_gradient_reason(model)
        if reason is not None:
            raise ModelError(reason)
        missing = unsupported_ops(model)
        if missing:
            raise ModelError(
                f"the ONNX graph uses operator(s) the twin does not implement: {', '.join(missing)}"
            )
        graph = model.graph
        self._buffer_names: dict[str, str] = {}
        for index, (name, tensor) in enumerate(initializer_tensors(model).items()):
            attribute_name = f"initializer_{index}"
            self.register_buffer(attribute_name, tensor, persistent=False)
            self._buffer_names[name] = attribute_name
        inputs = [value.name for value in graph.input if value.name not in self._buffer_names]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise ModelError(
                f"expected a graph with one input and one output, found inputs {inputs} "
                f"and outputs {[value.name for value in graph.output]}"
            )
        self.input_name, self.output_name = inputs[0], graph.output[0].name
        declared = next(value for value in graph.input if value.name == self.input_name)
        self.input_dtype = _TORCH_DTYPES.get(declared.type.tensor_type.elem_type, torch.float32)
        """What the graph's input is (float16 for a half-precision model): gate's float32 is cast to it."""
        self.straight_through = straight_through
        self._nodes = parse_nodes(model)
        if straight_through:
            replaced = straight_through_functions(model)
            self._nodes = [
                node._replace(function=replaced.get(index, node.function))
                for index, node in enumerate(self._nodes)
            ]

    def forward(self, x: torch.Tensor, output: str | None = None) -> torch.Tensor:
        """The graph's output for ``x``, or the inner value named ``output`` (e.g. logits before a sigmoid)."""
        wanted = self.output_name if output is None else output
        values: dict[str, torch.Tensor] = {
            name: getattr(self, attr) for name, attr in self._buffer_names.items()
        }
        values[self.input_name] = x.to(self.input_dtype)
        for function, call, input_names, output_names in self._nodes:
            args = [values[name] if name else None for name in input_names]
            try:
                result = function(call, *args)
            except ModelError:
                raise
            except Exception as error:
                raise ModelError(
                    f"the twin failed at {call.op_type} node {call.name!r}: {type(error).__name__}: {error}"
                ) from error
            results = result if isinstance(result, tuple) else (result,)
            for name, value in zip(output_names, results, strict=False):
                if name:
                    values[name] = value.to(x.device)
            if wanted in values:
                return _as_float32(values[wanted])
        if wanted not in values:
            raise ModelError(f"the graph computes no value named {wanted!r}")
        return _as_float32(values[wanted])


def _as_float32(value: torch.Tensor) -> torch.Tensor:
    """Scores in float32, as the session's are read: a half-precision graph's logits are cast up."""
    return value.float() if value.is_floating_point() and value.dtype != torch.float32 else value


def build_twin(model: onnx.ModelProto, *, straight_through: bool = False) -> OnnxTwin:
    """A differentiable twin of ``model``, or a ``ModelError`` naming the operators it lacks.

    ``straight_through=True`` gives the BPDA surrogate: the same forward, with straight-through gradients
    through the ops that would otherwise hide the input gradient (``non_differentiable_ops``).
    """
    return OnnxTwin(model, straight_through=straight_through).eval()
