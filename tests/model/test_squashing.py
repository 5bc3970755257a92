"""Squashed outputs: the final sigmoid or softmax is found in the graph, and gradients come from before it."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from gate.model import ModelSpec, export_to_onnx, load_model
from gate.model.squashing import (
    BeforeSquashing,
    graph_squashing,
    looks_like_log_probabilities,
    looks_like_probabilities,
    unit_interval_rows,
)


def linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()


class FunctionalSoftmax(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = linear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.body(x), dim=1)


def exported(module: nn.Module, path: Path) -> onnx.ModelProto:
    export_to_onnx(module, torch.rand(2, 1, 8, 8), path)
    return onnx.load(str(path))


def test_pure_predicates() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]])
    assert not unit_interval_rows(logits)[0] and unit_interval_rows(torch.sigmoid(logits)).all()
    assert not looks_like_probabilities(torch.sigmoid(logits)).any()
    assert looks_like_probabilities(torch.softmax(logits, 1)).all()
    assert looks_like_log_probabilities(torch.log_softmax(logits, 1)).all()


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (nn.Sigmoid(), "sigmoid"),
        (nn.Softmax(dim=1), "softmax"),
        (nn.LogSoftmax(dim=1), "log_softmax"),
        (None, None),
    ],
)
def test_the_graph_s_final_squashing_is_found(tmp_path, head, kind) -> None:
    module = linear() if head is None else nn.Sequential(linear(), head)
    proto = exported(module, tmp_path / "m.onnx")
    found = graph_squashing(proto)
    assert (None if found is None else found[0]) == kind
    if found is not None:  # the named value is the squashing's input: the Gemm's output
        producer = next(node for node in proto.graph.node if found[1] in node.output)
        assert producer.op_type == "Gemm"


def _forms() -> dict[str, nn.Module]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated upstream
        scripted = torch.jit.script(nn.Sequential(linear(), nn.Sigmoid()))
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        nn.Sequential(linear(), nn.Sigmoid()), (torch.rand(2, 1, 8, 8),), dynamic_shapes=({0: batch},)
    )
    return {
        "nn.Sigmoid": nn.Sequential(linear(), nn.Sigmoid()),
        "torchscript": scripted,
        "torch.export": program.module(),
    }


@pytest.mark.parametrize("form", ["nn.Sigmoid", "torchscript", "torch.export"])
def test_before_squashing_returns_the_module_s_own_logits_with_their_gradients(form) -> None:
    squashed = _forms()[form]
    x = torch.rand(5, 1, 8, 8, requires_grad=True)
    logits = BeforeSquashing(squashed, "sigmoid")(x)
    torch.testing.assert_close(logits, linear()(x))
    (grad,) = torch.autograd.grad(logits[:, 3].sum(), x)
    torch.testing.assert_close(grad, linear()[1].weight[3].view(1, 1, 8, 8).expand(5, 1, 8, 8))


def test_before_squashing_a_functional_softmax() -> None:
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(BeforeSquashing(FunctionalSoftmax(), "softmax")(x), linear()(x))


@pytest.mark.parametrize("source", ["onnx", "factory"])
def test_a_squashed_model_s_gradient_model_returns_logits_and_its_scores_stay_probabilities(
    tmp_path, monkeypatch, source
) -> None:
    module = nn.Sequential(linear(), nn.Sigmoid()).eval()
    x = torch.rand(6, 1, 8, 8)
    if source == "onnx":
        export_to_onnx(module, x, tmp_path / "sigmoid.onnx")
        spec = ModelSpec(str(tmp_path / "sigmoid.onnx"))
    else:
        (tmp_path / "sigmoid_factory.py").write_text(
            "import torch\nfrom torch import nn\n\ndef build():\n    torch.manual_seed(0)\n"
            "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Sigmoid())\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        spec = ModelSpec("sigmoid_factory:build", input_shape=(1, 8, 8))
    model = load_model(spec, work_dir=tmp_path / "work")
    assert model.output_squashing == "sigmoid" and "final sigmoid" in model.logits_from
    with torch.no_grad():
        torch.testing.assert_close(model.require_gradient_model()(x), linear()(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.source_scores(x), module(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.scores(x), module(x).detach(), atol=1e-5, rtol=1e-5)


COPIED_SIGMOID = """
import torch
from torch import nn


class CopiedSigmoid(nn.Module):
    # Ends in a sigmoid whose result is copied: the export ends in the Sigmoid, but the module's output
    # is not the sigmoid's own tensor.
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        return torch.sigmoid(self.linear(x.flatten(1))).clone()


def build():
    return CopiedSigmoid()
"""


def test_a_squashing_gate_cannot_look_behind_withdraws_the_gradients(tmp_path, monkeypatch) -> None:
    (tmp_path / "copied_sigmoid.py").write_text(COPIED_SIGMOID)
    monkeypatch.syspath_prepend(str(tmp_path))
    model = load_model(ModelSpec("copied_sigmoid:build", input_shape=(1, 8, 8)), work_dir=tmp_path / "work")
    assert model.output_squashing == "sigmoid"
    assert model.gradient_model is None
    assert "cannot attack the logits before it" in model.gradient_unavailable_reason
