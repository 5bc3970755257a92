"""Outputs squashed into probabilities, and the logits before the squashing that gradient checks use.

A model that ends in a sigmoid or a softmax saturates: in float32 a sigmoid of 17 is exactly 1, its
gradient exactly 0, and a cross-entropy on probabilities is nearly flat. Gradient attacks on such outputs
overstate robustness, the gradient masking of Athalye et al. 2018 that AutoAttack's own checks warn about
(``autoattack/checks.py``: softmax outputs). Both squashings keep the order of the classes within a row,
so the class the deployed model picks is the argmax of the logits before them: gate attacks those logits,
which measures the same decision without the saturation. ``log_softmax`` needs nothing undone: a
cross-entropy, DLR or margin on log-probabilities equals the one on the logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from gate.errors import ModelError

if TYPE_CHECKING:
    import onnx

Squashing = Literal["sigmoid", "softmax", "log_softmax"]
UNDONE: tuple[Squashing, ...] = ("sigmoid", "softmax")
"""The squashings gate looks behind; ``log_softmax`` masks nothing."""

_ONNX_OPS: dict[str, Squashing] = {"Sigmoid": "sigmoid", "Softmax": "softmax", "LogSoftmax": "log_softmax"}
_ATEN_OPS: dict[Squashing, tuple[Any, ...]] = {
    "sigmoid": (torch.ops.aten.sigmoid.default,),
    "softmax": (torch.ops.aten._softmax.default, torch.ops.aten.softmax.int),
}

# How far an output may be outside [0, 1], or a row's sum from 1, and still count as a probability
# (float32 softmax sums to 1 within about 1e-6 per thousand classes).
PROBABILITY_ATOL = 1e-3


def looks_like_probabilities(scores: torch.Tensor, atol: float = PROBABILITY_ATOL) -> torch.Tensor:
    """Per row: every value in [0, 1] and the row sums to 1 (a softmax)."""
    return unit_interval_rows(scores, atol) & ((scores.sum(dim=1) - 1).abs() <= atol)


def looks_like_log_probabilities(scores: torch.Tensor, atol: float = PROBABILITY_ATOL) -> torch.Tensor:
    """Per row: every value at most 0 and logsumexp 0, i.e. the logarithm of a probability distribution."""
    return (scores <= atol).all(dim=1) & (torch.logsumexp(scores, dim=1).abs() <= atol)


def unit_interval_rows(scores: torch.Tensor, atol: float = PROBABILITY_ATOL) -> torch.Tensor:
    """Per row: every value in [0, 1], as a per-class sigmoid (or any probability) gives."""
    return ((scores >= -atol) & (scores <= 1 + atol)).all(dim=1)


def graph_squashing(model: onnx.ModelProto) -> tuple[Squashing, str] | None:
    """The squashing that produces the graph's output, and the name of its input (the logits), if any.

    Identity nodes between the squashing and the output are looked through; a softmax counts only over
    the class axis (1 or -1) of a two-dimensional output.
    """
    producers = {name: node for node in model.graph.node for name in node.output}
    if len(model.graph.output) != 1:
        return None
    name = model.graph.output[0].name
    node = producers.get(name)
    while node is not None and node.op_type == "Identity" and node.domain in ("", "ai.onnx"):
        node = producers.get(node.input[0])
    if node is None or node.domain not in ("", "ai.onnx") or node.op_type not in _ONNX_OPS:
        return None
    kind = _ONNX_OPS[node.op_type]
    if kind != "sigmoid":
        axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
        if axis not in (1, -1):
            return None
    return kind, node.input[0]


class _LastSquashing(TorchDispatchMode):
    """Records, for every sigmoid or softmax a forward pass computes, its output and its input."""

    def __init__(self, kind: Squashing) -> None:
        super().__init__()
        self.ops = _ATEN_OPS[kind]
        self.inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func in self.ops and isinstance(out, torch.Tensor):
            self.inputs[id(out)] = (out, args[0])
        return out

    def input_of(self, output: torch.Tensor) -> torch.Tensor | None:
        found = self.inputs.get(id(output))
        return None if found is None or found[0] is not output else found[1]


class BeforeSquashing(nn.Module):
    """``module`` returning the input of its final sigmoid or softmax instead of the probabilities.

    The squashing is found at the level of torch's operators while the module runs, so it works for
    ``nn.Sigmoid``, ``torch.softmax`` in a forward, an exported program and a TorchScript archive alike;
    the returned tensor is the module's own pre-activation, with its exact gradients.
    """

    def __init__(self, module: nn.Module, kind: Squashing) -> None:
        super().__init__()
        self.module = module
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with _LastSquashing(self.kind) as recorder:
            output = self.module(x)
        logits = recorder.input_of(output)
        if logits is None:
            raise ModelError(
                f"the exported model ends in a {self.kind}, but the PyTorch module's output is not the "
                f"result of one, so gate cannot attack the logits before it"
            )
        return logits


class GraphValue(nn.Module):
    """A twin that returns an inner value of its graph (the input of the final squashing) as its output."""

    def __init__(self, twin: nn.Module, name: str) -> None:
        super().__init__()
        self.twin = twin
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.twin(x, output=self.name)
