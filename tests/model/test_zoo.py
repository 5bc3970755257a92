"""The model zoo end to end: ``gate check`` of torchvision, timm and Hugging Face architectures.

Each architecture (random init, 3x32x32, 4 classes; ``zoo_models``) goes through the CLI with accuracy,
export parity, PGD and a saliency check: the export must open and agree with the source, no check may end
as ``error``, gate's clean accuracy must equal ONNX Runtime's on the exported file, and gate's own twin of
that file must reproduce the session. Two small ones run in the default suite; the rest are ``slow``.
Per-model seconds come from ``benchmarks/bench_zoo.py``, not from here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from gate.cli import main
from gate.report.model import Report

HERE = Path(__file__).parent
DEFAULT = ["tv_resnet18", "hf_vit_tiny"]
SLOW = [
    "tv_mobilenet_v3_small",
    "tv_efficientnet_b0",
    "tv_densenet121",
    "tv_regnet_y_400mf",
    "tv_vgg11_bn",
    "tv_shufflenet_v2_x0_5",
    "timm_deit_tiny",
    "timm_convnext_atto",
    "timm_efficientnet_b0",
]
# Logit differences are judged relative to the logits' scale: float32 sums are ordered differently in
# ONNX Runtime, PyTorch and the twin, and random-init networks with measured batch-norm statistics reach
# logits in the thousands (timm's efficientnet_b0: 1274, with 0.41 between PyTorch and the session).
RELATIVE_TOLERANCE = 1e-3


@pytest.fixture()
def zoo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """``zoo_models`` importable (as gate imports the factory) and the working directory in tmp_path."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.chdir(tmp_path)
    import zoo_models

    return zoo_models


def require(library: str) -> None:
    """Skip unless ``library`` imports; an installed torchvision is made importable first."""
    if importlib.util.find_spec("torchvision") is not None:
        from torchvision_shim import import_torchvision

        import_torchvision()
    pytest.importorskip(library)


def largest_logit(onnx_path: Path, data: Path) -> float:
    with np.load(data) as arrays:
        x = arrays["x"]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return float(np.abs(session.run(None, {session.get_inputs()[0].name: x})[0]).max())


def gate_the_zoo_model(zoo, name: str, tmp_path: Path) -> None:
    model = zoo.ZOO[name]
    require(model.library)
    inputs = zoo.write_inputs(tmp_path / "inputs", model)
    report_dir = tmp_path / "report"
    result = CliRunner().invoke(main, zoo.check_arguments(model, inputs, report_dir), catch_exceptions=False)
    assert "Traceback" not in result.output
    report = Report.model_validate_json((report_dir / "report.json").read_text(encoding="utf-8"))
    statuses = {check.id: check.status for check in report.checks}
    messages = {check.id: check.message for check in report.checks}
    assert statuses == dict.fromkeys(["clean-accuracy", "parity", "pgd", "saliency"], "pass"), messages
    assert result.exit_code == 0, result.output
    assert report.model.gradients == "available"

    onnx_path = Path(report.model.onnx_path or "")
    assert onnx_path == report_dir / "model" / "model.onnx" and onnx_path.is_file()
    accuracy = next(check for check in report.checks if check.kind == "accuracy")
    assert accuracy.n == 16
    assert accuracy.value == zoo.session_accuracy(onnx_path, inputs["data"])

    scale = max(1.0, largest_logit(onnx_path, inputs["data"]))
    parity = next(check for check in report.checks if check.kind == "export_parity")
    assert parity.value == 1.0, parity.message
    assert parity.details["max_abs_diff_clean"] <= RELATIVE_TOLERANCE * scale, parity.details
    assert zoo.twin_difference(onnx_path, inputs["data"]) <= RELATIVE_TOLERANCE * scale


@pytest.mark.parametrize("name", DEFAULT)
def test_a_small_zoo_model_is_gated_end_to_end(zoo, name: str, tmp_path: Path) -> None:
    gate_the_zoo_model(zoo, name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_the_zoo_is_gated_end_to_end(zoo, name: str, tmp_path: Path) -> None:
    gate_the_zoo_model(zoo, name, tmp_path)


def test_the_zoo_lists_each_model_once(zoo) -> None:
    assert sorted(DEFAULT + SLOW) == sorted(zoo.ZOO)
    assert all(callable(getattr(zoo, name)) for name in zoo.ZOO)
