"""The ONNX Runtime session that stands for the deployed model, on the execution provider that really works."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort
import torch

from gate.errors import ModelError
from gate.model.spec import Device

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

# ORT's default logger level (warning); restored after a quiet CUDA probe.
_ORT_DEFAULT_SEVERITY = 2
_ORT_FATAL_ONLY = 4

logger = logging.getLogger(__name__)


def _session_options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return options


# Full float32 on the GPU. ORT's CUDA provider, like torch's cuDNN convolutions, uses TF32 tensor cores
# by default on Ampere and later, which rounds inputs to 10 mantissa bits: logits then move by about
# 1e-3, the twin and the session disagree, and parity is judged on rounding rather than on the export.
CUDA_OPTIONS = {"use_tf32": "0"}


def _open(path: Path, providers: list[str | tuple[str, dict[str, str]]]) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), _session_options(), providers=providers)
    except Exception as error:
        raise ModelError(f"ONNX Runtime cannot load the model: {error}", path=path) from error


# Set once a CUDA session has fallen back to the CPU: the libraries will not appear later in the process.
_cuda_failed = False


def _try_cuda(path: Path) -> ort.InferenceSession | None:
    """A CUDA session, or ``None`` if ORT fell back to the CPU (its fallback is silent apart from log lines)."""
    global _cuda_failed
    if _cuda_failed or CUDA not in ort.get_available_providers():
        return None
    # onnxruntime-gpu lists CUDA even without the CUDA libraries and then prints errors while falling back;
    # the probe runs with ORT's default logger at fatal-only so that a CPU machine stays quiet.
    ort.set_default_logger_severity(_ORT_FATAL_ONLY)
    try:
        session = _open(path, [(CUDA, CUDA_OPTIONS), CPU])
    finally:
        ort.set_default_logger_severity(_ORT_DEFAULT_SEVERITY)
    if session.get_providers()[0] != CUDA:
        _cuda_failed = True
        return None
    return session


def open_session(path: Path, device: Device) -> ort.InferenceSession:
    """Open ``path`` on CUDA when asked for ("cuda") or when it really works ("auto"); else on the CPU."""
    if device == "cpu":
        return _open(path, [CPU])
    session = _try_cuda(path)
    if session is not None:
        return session
    if device == "cuda":
        raise ModelError(
            "device 'cuda' was requested but ONNX Runtime's CUDAExecutionProvider does not work here "
            f"(available providers: {', '.join(ort.get_available_providers())}; a CUDA session fell back to the CPU)",
            path=path,
            hint="install the CUDA and cuDNN libraries onnxruntime-gpu needs, or use --device auto/cpu",
        )
    logger.info("CUDA execution provider unavailable; running ONNX Runtime on the CPU")
    return _open(path, [CPU])


def torch_device(device: Device, provider: str) -> torch.device:
    """Where the torch modules run: on the GPU when torch can use it and the user did not ask for the CPU."""
    if device != "cpu" and torch.cuda.is_available():
        full_float32_on_gpu()
        return torch.device("cuda")
    if provider == CUDA and device == "cuda":
        logger.info(
            "ONNX Runtime runs on CUDA but this torch build has no CUDA; torch modules stay on the CPU"
        )
    return torch.device("cpu")


def full_float32_on_gpu() -> None:
    """Turn TF32 off for torch's matrix products and convolutions (see ``CUDA_OPTIONS``): gate measures
    the model, so the PyTorch twin computes in the same full float32 as the ONNX Runtime session.

    Through the ``allow_tf32`` switches, which keep cuDNN's convolution and RNN settings equal: setting
    only the convolutions' ``fp32_precision`` makes ``torch.export`` (the ONNX exporter) fail on reading
    the mixed state.
    """
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
