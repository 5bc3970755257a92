"""Traditional-ML operators (domain ``ai.onnx.ml``) that have gradients: linear classifiers and scalers.

They follow ONNX Runtime's kernels (``onnxruntime/core/providers/cpu/ml/``), which are what gate judges,
where those differ from the ONNX-ML specification's reference: a Normalizer's MAX divides by the row's
largest value (not its largest magnitude) and a zero norm leaves the row as it is; a binary
LinearClassifier with one row of coefficients returns ``[1 - σ(s), σ(s)]`` of its raw score ``s`` for
LOGISTIC and ``[1 - s, s]`` for every other post_transform (ONNX Runtime 1.31, pinned by the tests). Tree ensembles are piecewise constant: their gradient is zero almost everywhere, so
the twin refuses them with that reason (``NO_GRADIENT``) rather than differentiating a step function.
"""

from __future__ import annotations

import torch

from gate.model.twin.call import OpCall, OpFunction

DOMAIN = "ai.onnx.ml"

_TREE_REASON = (
    "a tree ensemble ({op}) is piecewise constant: it has no gradients; gradient attacks cannot run, "
    "the black-box constrained-search attack can"
)
NO_GRADIENT: dict[str, str] = {
    op: _TREE_REASON.format(op=op)
    for op in ("TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble")
}
"""ai.onnx.ml operators without gradients, and the reason the twin gives for refusing them."""


def _floats(call: OpCall, key: str) -> torch.Tensor:
    return torch.tensor(list(call.attr(key, [])), dtype=torch.float32)


def _rows(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    """The input as float32 ``[N, F]``; ONNX Runtime reads a 1-D input as one row."""
    if x.dim() > 2:
        raise call.unsupported(f"an input of rank {x.dim()}")
    return x.to(torch.float32).reshape(1, -1) if x.dim() == 1 else x.to(torch.float32)


def linear_raw_scores(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    """``x · coefficientsᵀ + intercepts``: one column per intercept, before any post_transform."""
    intercepts = _floats(call, "intercepts").to(x.device)
    if not len(intercepts):
        raise call.unsupported("a LinearClassifier without intercepts")
    coefficients = _floats(call, "coefficients").to(x.device).reshape(len(intercepts), -1)
    return _rows(call, x) @ coefficients.t() + intercepts


def _labels(call: OpCall) -> list[int] | None:
    labels = call.attr("classlabels_ints")
    return None if labels is None else [int(v) for v in labels]


def _softmax_zero(scores: torch.Tensor) -> torch.Tensor:
    """ONNX Runtime's SOFTMAX_ZERO: a score within 1e-7 of zero counts as absent (probability ~0)."""
    shifted = scores - scores.amax(dim=1, keepdim=True)
    present = scores.abs() > 1e-7
    exps = torch.where(present, shifted.exp(), scores * torch.exp(-scores.amax(dim=1, keepdim=True)))
    total = torch.where(present, exps, torch.zeros_like(exps)).sum(dim=1, keepdim=True)
    return exps / total


def linear_classifier(call: OpCall, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs ``(label, scores)``: the label first, as in the operator's signature."""
    raw = linear_raw_scores(call, x)
    labels = _labels(call)
    class_labels = labels if labels is not None else call.attr("classlabels_strings") or []
    transform = call.attr("post_transform", "NONE")
    if transform == "PROBIT":
        raise call.unsupported("post_transform PROBIT")
    if raw.shape[1] == 1 and len(class_labels) == 2:
        score = raw[:, 0]
        positive = labels[1] if labels is not None else 1
        negative = labels[0] if labels is not None else 0
        label = torch.where(score > 0, positive, negative).to(torch.int64)
        positive_scores = torch.sigmoid(raw) if transform == "LOGISTIC" else raw
        return label, torch.cat([1 - positive_scores, positive_scores], dim=1)
    # A string label has no tensor form: its consumers (a ZipMap, a label encoder) are outside the twin.
    index = raw.argmax(dim=1)
    label = index if labels is None else torch.tensor(labels, device=raw.device)[index]
    if transform == "LOGISTIC":
        scores = torch.sigmoid(raw)
    elif transform == "SOFTMAX":
        scores = torch.softmax(raw, dim=1)
    elif transform == "SOFTMAX_ZERO":
        scores = _softmax_zero(raw)
    elif transform == "NONE":
        scores = raw
    else:
        raise call.unsupported(f"post_transform {transform}")
    return label, scores


def normalizer(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    rows = _rows(call, x)
    norm = call.attr("norm", "MAX")
    if norm == "MAX":
        divisor = rows.amax(dim=1, keepdim=True)
    elif norm == "L1":
        divisor = rows.abs().sum(dim=1, keepdim=True)
    elif norm == "L2":
        divisor = (rows * rows).sum(dim=1, keepdim=True)
    else:
        raise call.unsupported(f"norm {norm!r}")
    # A zero divisor leaves the row unchanged; the safe divisor keeps its gradient finite (sqrt included).
    safe = torch.where(divisor != 0, divisor, torch.ones_like(divisor))
    return (rows / (safe.sqrt() if norm == "L2" else safe)).reshape(x.shape)


def scaler(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    offset, scale = _floats(call, "offset").to(x.device), _floats(call, "scale").to(x.device)
    if not len(scale) or len(scale) != len(offset):
        raise call.unsupported(f"scale of length {len(scale)} with offset of length {len(offset)}")
    return ((x.to(torch.float32) - offset) * scale).to(torch.float32)


OPS: dict[str, OpFunction] = {
    "LinearClassifier": linear_classifier,
    "Normalizer": normalizer,
    "Scaler": scaler,
}
