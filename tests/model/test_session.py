"""Execution-provider selection: quiet CPU fallback, an honest error when CUDA is demanded but broken."""

from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest

from gate.errors import ModelError
from gate.model import ModelSpec, load_model
from gate.model.session import CPU, CUDA, open_session

from .test_onnx_file import linear_model


def cuda_really_works(path) -> bool:
    session = open_session(path, "auto")
    return session.get_providers()[0] == CUDA


@pytest.fixture()
def linear_onnx(tmp_path):
    path = tmp_path / "linear.onnx"
    onnx.save_model(linear_model(), str(path))
    return path


def test_cpu_is_used_when_asked(linear_onnx, tmp_path):
    model = load_model(ModelSpec(str(linear_onnx), device="cpu"), work_dir=tmp_path)
    assert model.provider == CPU
    assert str(model.device) == "cpu"


def test_auto_reports_the_provider_that_really_runs_and_stays_quiet(linear_onnx, tmp_path, capfd):
    model = load_model(ModelSpec(str(linear_onnx), device="auto"), work_dir=tmp_path)
    assert model.provider == model._session.get_providers()[0]
    assert model.provider in ort.get_available_providers()
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_cuda_demanded_but_not_working_is_a_model_error(linear_onnx, tmp_path):
    if cuda_really_works(linear_onnx):
        pytest.skip("CUDAExecutionProvider works on this machine")
    with pytest.raises(
        ModelError, match=r"device 'cuda' was requested but .*CUDAExecutionProvider does not work"
    ):
        load_model(ModelSpec(str(linear_onnx), device="cuda"), work_dir=tmp_path)


@pytest.mark.gpu
def test_cuda_session_scores_match_the_cpu(linear_onnx, tmp_path):
    import torch

    model = load_model(ModelSpec(str(linear_onnx), device="cuda"), work_dir=tmp_path)
    assert model.provider == CUDA
    x = torch.rand(64, 1, 8, 8)
    cpu = load_model(ModelSpec(str(linear_onnx), device="cpu"), work_dir=tmp_path)
    torch.testing.assert_close(model.scores(x), cpu.scores(x), atol=1e-4, rtol=1e-4)
    if torch.cuda.is_available():  # I/O binding path: CUDA tensors in, CUDA logits out
        xc = x.cuda()
        assert model.scores(xc).device == xc.device
        torch.testing.assert_close(model.scores(xc).cpu(), cpu.scores(x), atol=1e-4, rtol=1e-4)
