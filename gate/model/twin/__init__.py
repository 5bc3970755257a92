"""A small ONNX-to-PyTorch interpreter: the differentiable twin of an ONNX-only model."""

from gate.model.twin.graph import OnnxTwin, build_twin, supported_ops, unsupported_ops

__all__ = ["OnnxTwin", "build_twin", "supported_ops", "unsupported_ops"]
