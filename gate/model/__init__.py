"""Model intake: every supported model source ends in one ``ModelUnderTest`` that the checks use."""

from gate.model.export import ExportInfo, export_to_onnx
from gate.model.preprocess import Preprocess
from gate.model.spec import ModelSpec, load_model_card, merge_spec
from gate.model.twin import OnnxTwin, build_twin, supported_ops
from gate.model.under_test import ModelUnderTest, export_model, load_model

__all__ = [
    "ExportInfo",
    "ModelSpec",
    "ModelUnderTest",
    "OnnxTwin",
    "Preprocess",
    "build_twin",
    "export_model",
    "export_to_onnx",
    "load_model",
    "load_model_card",
    "merge_spec",
    "supported_ops",
]
