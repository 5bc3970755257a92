"""Execution-provider selection: quiet CPU fallback, an honest error when CUDA is demanded but broken."""

from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest

from gate.errors import ModelError
from gate.model import ModelSpec, load_model
from gate.model import session as session_module
from gate.model.session import CPU, CUDA, full_float32_on_gpu, open_session

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
    assert model._session.get_provider_options()[CUDA]["use_tf32"] == "0"
    x = torch.rand(64, 1, 8, 8)
    cpu = load_model(ModelSpec(str(linear_onnx), device="cpu"), work_dir=tmp_path)
    torch.testing.assert_close(model.scores(x), cpu.scores(x), atol=1e-4, rtol=1e-4)
    if torch.cuda.is_available():  # I/O binding path: CUDA tensors in, CUDA logits out
        xc = x.cuda()
        assert model.scores(xc).device == xc.device
        torch.testing.assert_close(model.scores(xc).cpu(), cpu.scores(x), atol=1e-4, rtol=1e-4)


def test_cuda_sessions_are_opened_in_full_float32(linear_onnx, monkeypatch):
    # TF32 would move logits by ~1e-3 and make the twin and the session disagree; the CUDA provider is
    # asked for full float32. A stand-in session records what ONNX Runtime was asked for.
    asked = []

    class RecordingSession:
        def __init__(self, path, options, providers):
            asked.append(providers)

        def get_providers(self):
            return [CUDA, CPU]

    monkeypatch.setattr(session_module, "_cuda_failed", False)
    monkeypatch.setattr(session_module.ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(session_module.ort, "InferenceSession", RecordingSession)
    open_session(linear_onnx, "cuda")
    assert asked == [[(CUDA, {"use_tf32": "0"}), CPU]]


def test_torch_gpu_math_is_set_to_full_float32_and_export_still_works(tmp_path):
    import torch

    from gate.model import export_to_onnx

    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        full_float32_on_gpu()
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        # The exporter reads these switches; on the H200 a half-set state made every export fail.
        model = torch.nn.Sequential(
            torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(72, 3)
        ).eval()
        export_to_onnx(model, torch.zeros(1, 1, 8, 8), tmp_path / "model.onnx")
        assert (tmp_path / "model.onnx").is_file()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
