"""Outputs squashed into probabilities, and the logits before the squashing that gradient checks use.

A model that ends in a sigmoid or a softmax saturates: in float32 a sigmoid of 17 is exactly 1, its
gradient exactly 0, and a cross-entropy on probabilities is nearly flat. Gradient attacks on such outputs
overstate robustness, the gradient masking of Athalye et al. 2018 that AutoAttack's own checks warn about
(``autoattack/checks.py``: softmax outputs). Both squashings keep the order of the classes within a row,
so the class the deployed model picks is the argmax of the logits before them: gate attacks those logits,
which measures the same decision without the saturation. ``log_softmax`` needs nothing undone: a
cross-entropy, DLR or margin on log-probabilities equals the one on the logits.

Converted scikit-learn models squash in their own ways, which ``graph_logits`` recognises too:
skl2onnx's binary MLP ends in ``Concat(1 - σ(z), σ(z))``, exactly the softmax of the logits
``[0, z]``; a ``LinearClassifier`` applies its ``post_transform`` (LOGISTIC, SOFTMAX) inside the node,
so the logits are its raw scores ``x·Wᵀ + b``. Where the outputs are probabilities and no logits can be
recovered, ``LogProbabilities`` takes their logarithm: for a softmax, a cross-entropy or DLR margin on
log-probabilities equals the one on the logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
    node = _through_identity(producers, model.graph.output[0].name)
    return _plain_squashing(node)


_DEFAULT_DOMAINS = ("", "ai.onnx")
_ML_DOMAIN = "ai.onnx.ml"
# post_transform values that turn a classifier's raw scores into probabilities, and the squashing each is.
_POST_TRANSFORMS: dict[str, Squashing] = {
    "LOGISTIC": "sigmoid",
    "SOFTMAX": "softmax",
    "SOFTMAX_ZERO": "softmax",
}
_ML_CLASSIFIERS = ("LinearClassifier", "TreeEnsembleClassifier", "SVMClassifier")


def _through_identity(producers: dict[str, onnx.NodeProto], name: str) -> onnx.NodeProto | None:
    node = producers.get(name)
    while node is not None and node.op_type == "Identity" and node.domain in _DEFAULT_DOMAINS:
        node = producers.get(node.input[0])
    return node


def _plain_squashing(node: onnx.NodeProto | None) -> tuple[Squashing, str] | None:
    """A Sigmoid, a Softmax over the class axis or a LogSoftmax node, and its input."""
    if node is None or node.domain not in _DEFAULT_DOMAINS or node.op_type not in _ONNX_OPS:
        return None
    kind = _ONNX_OPS[node.op_type]
    if kind != "sigmoid":
        axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
        if axis not in (1, -1):
            return None
    return kind, node.input[0]


@dataclass(frozen=True)
class GraphLogits:
    """The squashing behind a graph value and how to compute the logits before it from the twin.

    ``build`` makes the logits module from the twin (None for a ``log_softmax``, which needs nothing
    undone); ``described`` says in words what it returns, for ``logits_from``; ``evidence`` names the
    node that makes the value probabilities (None for a ``log_softmax``).
    """

    squashing: Squashing
    described: str
    build: Callable[[nn.Module], nn.Module] | None
    evidence: str | None


def _attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    import onnx

    found = next((a for a in node.attribute if a.name == name), None)
    if found is None:
        return default
    value = onnx.helper.get_attribute_value(found)
    return value.decode() if isinstance(value, bytes) else value


def _constant_values(model: onnx.ModelProto, name: str) -> Any:
    """The value of an initializer or a Constant node's output as a numpy array, or None."""
    from onnx import numpy_helper

    for tensor in model.graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in model.graph.node:
        if node.op_type == "Constant" and name in node.output:
            value = _attribute(node, "value")
            return None if value is None else numpy_helper.to_array(value)
    return None


def _binary_sigmoid_pair(model: onnx.ModelProto, node: onnx.NodeProto | None) -> str | None:
    """``z`` when ``node`` is ``Concat(Sub(1, Sigmoid(z)), Sigmoid(z))`` over the class axis (skl2onnx)."""
    if (
        node is None
        or node.op_type != "Concat"
        or node.domain not in _DEFAULT_DOMAINS
        or len(node.input) != 2
    ):
        return None
    if _attribute(node, "axis") not in (1, -1):
        return None
    producers = {name: n for n in model.graph.node for name in n.output if name}
    negative, positive = node.input
    sigmoid = producers.get(positive)
    subtract = producers.get(negative)
    if sigmoid is None or sigmoid.op_type != "Sigmoid" or subtract is None or subtract.op_type != "Sub":
        return None
    one = _constant_values(model, subtract.input[0])
    if subtract.input[1] != positive or one is None or one.size == 0 or not (one == 1).all():
        return None
    return sigmoid.input[0]


class BinaryPairLogits(nn.Module):
    """The softmax logits ``[0, z]`` of ``[1 - σ(z), σ(z)]``, with ``z`` read from the twin."""

    def __init__(self, twin: nn.Module, name: str) -> None:
        super().__init__()
        self.twin = twin
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.twin(x, output=self.name)
        return torch.cat([torch.zeros_like(z), z], dim=1)


class LinearRawScores(nn.Module):
    """A LinearClassifier's raw scores ``x·Wᵀ + b`` (before its post_transform), its input from the twin."""

    def __init__(self, twin: nn.Module, name: str, node: onnx.NodeProto, binary: bool = False) -> None:
        super().__init__()
        import onnx

        from gate.model.twin.call import OpCall

        self.twin = twin
        self.name = name
        self.binary = binary
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        self.call = OpCall(node.op_type, node.name or node.op_type, 0, attrs, len(node.output))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from gate.model.twin.ml_ops import linear_raw_scores

        scores = linear_raw_scores(self.call, self.twin(x, output=self.name))
        # One row of coefficients: the probabilities [1 - σ(s), σ(s)] are the softmax of [0, s].
        return torch.cat([torch.zeros_like(scores), scores], dim=1) if self.binary else scores


def _ml_classifier(
    model: onnx.ModelProto, producers: dict[str, onnx.NodeProto], value: str
) -> tuple[onnx.NodeProto, bool] | None:
    """The ai.onnx.ml classifier whose scores ``value`` is, looking through Identity and an L1 Normalizer
    (which skl2onnx puts after a multi-class LinearClassifier), and whether a Normalizer was passed."""
    node, normalised = _through_identity(producers, value), False
    if node is not None and node.domain == _ML_DOMAIN and node.op_type == "Normalizer":
        if _attribute(node, "norm", "MAX") != "L1":
            return None
        node, normalised = _through_identity(producers, node.input[0]), True
    if node is None or node.domain != _ML_DOMAIN or node.op_type not in _ML_CLASSIFIERS:
        return None
    if len(node.output) < 2:
        return None
    return node, normalised


def _single_row_binary(node: onnx.NodeProto) -> bool:
    """A LinearClassifier with one row of coefficients and two classes: ONNX Runtime returns
    ``[1 - σ(s), σ(s)]`` for LOGISTIC, else ``[1 - s, s]`` (no probabilities)."""
    labels = _attribute(node, "classlabels_ints") or _attribute(node, "classlabels_strings") or []
    return len(_attribute(node, "intercepts") or []) == 1 and len(labels) == 2


def graph_logits(model: onnx.ModelProto, value: str) -> GraphLogits | None:
    """The squashing that produces the graph value ``value`` (the scores gate judges), if gate knows it.

    A final Sigmoid, Softmax or LogSoftmax (``graph_squashing``'s rule), skl2onnx's binary
    ``Concat(1 - σ(z), σ(z))``, and a LinearClassifier's LOGISTIC or SOFTMAX post_transform (an L1
    Normalizer after it included) are recognised.
    """
    producers = {name: node for node in model.graph.node for name in node.output if name}
    node = _through_identity(producers, value)
    plain = _plain_squashing(node)
    if plain is not None:
        kind, logits = plain
        if kind not in UNDONE:
            return GraphLogits(kind, "the model's log-probabilities", None, None)
        return GraphLogits(
            kind,
            f"the input of the model's final {kind} (the logits before it)",
            lambda twin: GraphValue(twin, logits),
            f"a final {node.op_type}",
        )
    z = _binary_sigmoid_pair(model, node)
    if z is not None:
        return GraphLogits(
            "softmax",
            "[0, z] for the model's final Concat(1 - sigmoid(z), sigmoid(z)): the softmax logits of its "
            "two probabilities",
            lambda twin: BinaryPairLogits(twin, z),
            "a final Concat(1 - Sigmoid(z), Sigmoid(z))",
        )
    found = _ml_classifier(model, producers, value)
    if found is None or found[0].op_type != "LinearClassifier":
        return None
    classifier, normalised = found
    transform = _attribute(classifier, "post_transform", "NONE")
    binary = _single_row_binary(classifier)
    if transform not in _POST_TRANSFORMS or (binary and transform != "LOGISTIC"):
        return None
    after = " and the L1 Normalizer after it" if normalised else ""
    scores = "[0, s] of its one raw score s = x·wᵀ + b" if binary else "raw scores x·Wᵀ + b"
    return GraphLogits(
        "softmax" if binary else _POST_TRANSFORMS[transform],
        f"the LinearClassifier's {scores} (before its post_transform {transform}{after})",
        lambda twin: LinearRawScores(twin, classifier.input[0], classifier, binary),
        f"a LinearClassifier with post_transform {transform}",
    )


def probability_evidence(model: onnx.ModelProto, value: str) -> str | None:
    """Why the graph value ``value`` is known to hold probabilities, from the graph alone (None if not).

    A final Sigmoid or Softmax, skl2onnx's binary Concat pattern, or an ai.onnx.ml classifier whose
    post_transform squashes (LOGISTIC, SOFTMAX, SOFTMAX_ZERO).
    """
    found = graph_logits(model, value)
    if found is not None:
        return found.evidence
    producers = {name: node for node in model.graph.node for name in node.output if name}
    classifier = _ml_classifier(model, producers, value)
    if classifier is None:
        return None
    transform = _attribute(classifier[0], "post_transform", "NONE")
    single_row = classifier[0].op_type == "LinearClassifier" and _single_row_binary(classifier[0])
    if transform in _POST_TRANSFORMS and not (single_row and transform != "LOGISTIC"):
        return f"a {classifier[0].op_type} with post_transform {transform}"
    return None


class LogProbabilities(nn.Module):
    """``log(clamp(p, min=tiny))`` of a module returning probabilities: log-probabilities, for attacks'
    margins (a cross-entropy or DLR on them equals the one on a softmax's logits)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = self.module(x)
        return torch.log(probabilities.clamp(min=torch.finfo(probabilities.dtype).tiny))


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
