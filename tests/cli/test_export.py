"""``gate export``: a PyTorch source becomes a checked ONNX file whose hash matches what gate check judges."""

from __future__ import annotations

import hashlib

import numpy as np
import onnxruntime as ort
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from gate.cli import main


def test_export_writes_an_onnx_file_that_matches_the_source(tmp_path, digits_cnn, digits_split):
    weights = tmp_path / "w.safetensors"
    save_file(digits_cnn.state_dict(), str(weights))
    output = tmp_path / "out" / "model.onnx"
    result = CliRunner().invoke(
        main,
        [
            "export",
            "-m",
            "gate.demo.models:digits_cnn",
            "-w",
            str(weights),
            "--input-shape",
            "1,8,8",
            "-o",
            str(output),
        ],
    )
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(output.read_bytes()).hexdigest()
    assert digest in result.output
    x = digits_split["x_test"][:16]
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: x})[0]
    expected = digits_cnn(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert not list(output.parent.glob(".gate-export-*"))  # no temporary folder left behind


def test_export_of_an_onnx_file_is_refused(tmp_path, digits_cnn_onnx):
    result = CliRunner().invoke(main, ["export", "-m", str(digits_cnn_onnx), "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 2 and "already an ONNX model" in result.output
