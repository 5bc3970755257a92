"""``export_to_onnx``: both exporters, dynamic batch, opset, self-contained output, hashing, failures."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from gate.errors import ModelError
from gate.model import export_to_onnx
from gate.model.export import INPUT_NAME, OUTPUT_NAME


def small_mlp() -> nn.Module:
    """Untrained on purpose: export parity does not depend on what the weights learnt."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


class DataDependent(nn.Module):
    """Branches on a tensor value, which torch.export cannot trace."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.fc(x.flatten(1))
        return -self.fc(x.flatten(1))


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_export_has_a_dynamic_batch_the_requested_opset_and_one_file(tmp_path, exporter):
    mlp = small_mlp()
    x = torch.rand(1, 1, 8, 8)  # a batch of one must still give a dynamic batch axis
    info = export_to_onnx(mlp, x, tmp_path / "mlp.onnx", exporter=exporter, opset=18)
    assert (info.exporter, info.opset, info.external_files) == (exporter, 18, ())
    assert list(tmp_path.iterdir()) == [tmp_path / "mlp.onnx"]
    assert info.sha256 == hashlib.sha256(info.path.read_bytes()).hexdigest()  # what sha256sum prints
    onnx.checker.check_model(str(info.path), full_check=True)
    session = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    assert [o.name for o in session.get_outputs()] == [OUTPUT_NAME]
    for batch in (1, 5):
        xb = torch.rand(batch, 1, 8, 8)
        (logits,) = session.run(None, {INPUT_NAME: xb.numpy()})
        np.testing.assert_allclose(logits, mlp(xb).detach().numpy(), atol=1e-5)


def test_large_models_keep_their_external_data_beside_the_model_and_in_the_hash(tmp_path, monkeypatch):
    mlp = small_mlp()
    monkeypatch.setattr("gate.model.export.INLINE_LIMIT_BYTES", 0)
    info = export_to_onnx(mlp, torch.rand(2, 1, 8, 8), tmp_path / "mlp.onnx")
    assert [p.name for p in info.external_files] == ["mlp.onnx.data"]
    assert info.sha256 != hashlib.sha256(info.path.read_bytes()).hexdigest()


def test_a_dynamo_failure_asked_for_explicitly_is_a_model_error_that_says_what_to_try(tmp_path):
    with pytest.raises(ModelError, match="the dynamo exporter could not export the model") as caught:
        export_to_onnx(DataDependent(), torch.rand(2, 1, 8, 8), tmp_path / "dd.onnx", exporter="dynamo")
    message = str(caught.value)
    assert "--exporter torchscript" in message and "torch.where" in message  # the advice for this cause
    assert "data-dependent" in message and "\x1b[" not in message
    assert not (tmp_path / "dd.onnx").exists()


def test_auto_falls_back_to_torchscript_when_dynamo_fails_and_says_so(tmp_path):
    module = DataDependent().eval()
    info = export_to_onnx(module, torch.rand(2, 1, 8, 8), tmp_path / "dd.onnx")
    assert (info.exporter, info.opset) == ("torchscript", 17)
    assert info.note is not None and "dynamo exporter failed" in info.note and "opset 17" in info.note
    session = ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])
    x = torch.rand(3, 1, 8, 8)  # positive sum: the branch the trace took
    (logits,) = session.run(None, {INPUT_NAME: x.numpy()})
    np.testing.assert_allclose(logits, module(x).detach().numpy(), atol=1e-5)


def test_a_model_both_exporters_refuse_names_both_causes(tmp_path):
    class Unexportable(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if torch.jit.is_tracing() or torch.compiler.is_compiling():
                raise RuntimeError("this model refuses to be traced")
            return x

    with pytest.raises(ModelError, match="dynamo and TorchScript exporters could not export") as caught:
        export_to_onnx(Unexportable(), torch.rand(2, 4), tmp_path / "u.onnx")
    assert "dynamo:" in str(caught.value) and "torchscript (opset 17):" in str(caught.value)
    assert "--exporter torchscript" not in str(caught.value)  # it was tried: not advised again


def test_a_failing_torchscript_export_writes_nothing_to_stdout(tmp_path, capfd):
    """The TorchScript exporter dumps its IR graph to stdout from C++ on failure; ``--json`` must stay clean."""

    class Attention(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q = x.flatten(2)
            return nn.functional.scaled_dot_product_attention(q, q, q).flatten(1)

    with pytest.raises(ModelError, match="torchscript exporter could not export"):
        export_to_onnx(
            Attention(), torch.rand(2, 1, 8, 8), tmp_path / "a.onnx", exporter="torchscript", opset=11
        )
    assert capfd.readouterr().out == ""
