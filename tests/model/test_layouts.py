"""Layouts and preprocessing from the model card: NHWC, BGR, inputs in 0..255, with budgets in gate's range."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from conftest import write_policy
from torch import nn

from gate.cli import main
from gate.errors import ModelError
from gate.model import ModelSpec, export_to_onnx, load_model, load_model_card
from gate.model.preprocess import make_preprocess

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


class ChannelsLast(nn.Module):
    """A channels-first network behind a channels-last input, as tf2onnx exports Keras models."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.permute(0, 3, 1, 2))


def small_rgb_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)
    ).eval()


def expected_input(x: torch.Tensor) -> np.ndarray:
    """What a BGR, 0..255, mean/std-normalised, channels-last model is fed for gate's RGB [0, 1] input."""
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return ((x * 255 - mean) / std).flip(1).permute(0, 2, 3, 1).contiguous().numpy()


@pytest.fixture(scope="module")
def bgr_nhwc_onnx(tmp_path_factory) -> tuple[Path, nn.Module]:
    model = ChannelsLast(small_rgb_cnn()).eval()
    path = tmp_path_factory.mktemp("nhwc") / "bgr_nhwc.onnx"
    export_to_onnx(model, torch.rand(2, 8, 8, 3), path)
    return path, model


def test_scale_mean_std_channel_order_and_layout_reach_the_session_and_the_twin(bgr_nhwc_onnx):
    path, module = bgr_nhwc_onnx
    spec = ModelSpec(str(path), scale=255, mean=MEAN, std=STD, channels="BGR", layout="NHWC")
    model = load_model(spec, work_dir=path.parent)
    assert model.input_shape == (3, 8, 8)  # gate's layout, whatever the model's
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (independent,) = session.run(None, {session.get_inputs()[0].name: expected_input(x)})
    torch.testing.assert_close(model.scores(x), torch.from_numpy(independent))
    with torch.no_grad():
        torch.testing.assert_close(module(torch.from_numpy(expected_input(x))), torch.from_numpy(independent))
    gradient_model = model.require_gradient_model()  # the twin, verified, behind the same preprocessing
    torch.testing.assert_close(gradient_model(x), torch.from_numpy(independent), atol=1e-4, rtol=1e-4)


def test_an_nhwc_model_without_layout_is_refused_with_the_fix(bgr_nhwc_onnx):
    path, _ = bgr_nhwc_onnx
    with pytest.raises(ModelError, match=r"\[N, 8, 8, 3\].*\[N, 3, 8, 8\]") as caught:
        load_model(ModelSpec(str(path)), work_dir=path.parent, example_input=torch.rand(2, 3, 8, 8))
    assert "layout: NHWC" in str(caught.value)


def test_a_channels_last_factory_is_exported_channels_last(tmp_path, monkeypatch):
    (tmp_path / "nhwc_factory.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 5))\n"
        "    class Net(nn.Module):\n"
        "        def __init__(self):\n"
        "            super().__init__()\n"
        "            self.conv = conv\n"
        "        def forward(self, x):\n"
        "            return self.conv(x.permute(0, 3, 1, 2))\n"
        "    return Net()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = ModelSpec("nhwc_factory:build", layout="NHWC", input_shape=(3, 8, 8))
    model = load_model(spec, work_dir=tmp_path / "work")
    session = ort.InferenceSession(str(model.onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [8, 8, 3]
    x = torch.rand(4, 3, 8, 8)
    torch.testing.assert_close(model.scores(x), model.source_scores(x), atol=1e-5, rtol=1e-5)


def test_the_model_card_reads_and_checks_the_preprocessing_keys(tmp_path):
    card = tmp_path / "gate-model.yaml"
    card.write_text("source: m.onnx\nscale: 255\nchannels: BGR\nlayout: NHWC\nmean: [1, 2, 3]\n")
    assert load_model_card(card) | {"source": None} == {
        "source": None,
        "scale": 255.0,
        "channels": "BGR",
        "layout": "NHWC",
        "mean": (1.0, 2.0, 3.0),
    }
    for line, needle in (
        ("layout: NWHC", "layout must be one of NCHW, NHWC"),
        ("channels: bgr", "channels must be one of RGB, BGR"),
        ("scale: [255]", "scale must be one number"),
    ):
        card.write_text(f"source: m.onnx\n{line}\n")
        with pytest.raises(ModelError, match=needle) as caught:
            load_model_card(card)
        assert caught.value.path == str(card)
    with pytest.raises(ModelError, match="scale must be a positive number"):
        ModelSpec("m.onnx", scale=0.0)


def test_bgr_and_nhwc_need_images():
    with pytest.raises(ModelError, match=r"layout NHWC is for images \[C, H, W\]"):
        make_preprocess(None, None, (30,), layout="NHWC")
    with pytest.raises(ModelError, match="channels BGR needs 3 channels"):
        make_preprocess(None, None, (1, 8, 8), channels="BGR")
    assert make_preprocess(None, None, (3, 8, 8)) is None


def test_gate_check_on_an_nhwc_model_matches_onnxruntime_and_budgets_stay_in_the_input_range(
    tmp_path, digits_cnn, digits_npz, digits_split
):
    """The done-when of issue 22 for layouts: accuracy equals an independent onnxruntime computation on the
    channels-last data, and the attack's budget is in gate's [0, 1] range, not in the model's units."""
    model = ChannelsLast(digits_cnn).eval()
    path = tmp_path / "digits_nhwc.onnx"
    export_to_onnx(model, torch.rand(2, 8, 8, 1), path)
    card = tmp_path / "gate-model.yaml"
    card.write_text(f"source: {path.name}\nlayout: NHWC\n")
    policy = write_policy(
        tmp_path / "policy.yaml",
        """
        version: 1
        name: nhwc
        checks:
          - {id: clean, kind: accuracy, min: 0.5}
          - {id: pgd, kind: adversarial, attack: pgd, epsilon: 0.1, steps: 10, min: 0.0}
        """,
    )
    report_dir = tmp_path / "report"
    result = CliRunner().invoke(
        main,
        ["check", "--policy", str(policy), "--model-card", str(card), "--data", str(digits_npz),
         "--report-dir", str(report_dir)],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((report_dir / "report.json").read_text())
    checks = {check["id"]: check for check in report["checks"]}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x_nhwc = np.ascontiguousarray(digits_split["x_test"].transpose(0, 2, 3, 1))
    (logits,) = session.run(None, {session.get_inputs()[0].name: x_nhwc})
    independent = float((logits.argmax(1) == digits_split["y_test"]).mean())
    assert checks["clean"]["value"] == pytest.approx(independent, abs=1e-12)
    assert checks["pgd"]["status"] == "pass" and checks["pgd"]["value"] < independent
    assert "available: the ONNX twin" in report["model"]["gradients"]
