"""Hostile artifacts: files built to run code, escape their folder, exhaust memory or inject markup.

Each is refused with exit 2 and a message naming the file, and whatever it would have done did not happen.
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from conftest import write_policy
from onnx import TensorProto, external_data_helper
from torch import nn

from gate.cli import main
from gate.report.formats import MarkdownFormat
from gate.report.html import HtmlFormat
from gate.report.model import (
    CheckResult,
    DataInfo,
    Environment,
    Finding,
    ModelInfo,
    PolicyInfo,
    Report,
    Summary,
    ThresholdModel,
)

POLICY = """
    version: 1
    name: hostile
    checks:
      - id: clean-accuracy
        kind: accuracy
        min: 0.1
    """

# Markup without "/" so that it can also be a file name.
MARKUP = "<img src=x onerror=alert(1)>"
LINK = "[click](javascript:alert(1))"


def invoke(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def check(
    policy: Path, model: str | Path, data: Path, report_dir: Path, *extra: str | Path
) -> tuple[int, str]:
    return invoke("check", "-p", policy, "-m", model, "-d", data, "-o", report_dir, "--device", "cpu", *extra)


@pytest.fixture()
def policy(tmp_path: Path) -> Path:
    return write_policy(tmp_path / "policy.yaml", POLICY)


class WritesAFile:
    """Unpickling this calls ``open(marker, "w")``: the file appears if anything unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


# --------------------------------------------------------------------- pickles
@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_pickled_model_is_refused_and_never_loaded(tmp_path, policy, digits_npz, container) -> None:
    marker = tmp_path / "pwned"
    model = tmp_path / "x.pt"
    if container == "torch.save":
        torch.save(WritesAFile(marker), model)
    else:
        model.write_bytes(pickle.dumps(WritesAFile(marker)))
    code, output = check(policy, model, digits_npz, tmp_path / "report")
    assert code == 2
    assert "refusing to load a pickled model" in output and str(model) in output
    assert not marker.exists()


def test_pickled_weights_are_refused_and_never_loaded(tmp_path, policy, digits_npz, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "model"))
    marker = tmp_path / "pwned"
    weights = tmp_path / "weights.pt"
    torch.save({"features.0.weight": WritesAFile(marker)}, weights)
    code, output = check(policy, "model_factories:make_cnn", digits_npz, tmp_path / "report", "-w", weights)
    assert code == 2
    assert "not a plain state dict" in output and str(weights) in output
    assert not marker.exists()


def test_object_arrays_in_data_are_refused_and_never_unpickled(tmp_path, policy, digits_cnn_onnx) -> None:
    marker = tmp_path / "pwned"
    data = tmp_path / "data.npz"
    np.savez(data, x=np.array([WritesAFile(marker)], dtype=object), y=np.zeros(1, dtype=np.int64))
    code, output = check(policy, digits_cnn_onnx, data, tmp_path / "report")
    assert code == 2
    assert "object array" in output and str(data) in output
    assert not marker.exists()


# --------------------------------------------------------------------- ONNX external data
class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


@pytest.fixture(scope="module")
def plain_onnx(tmp_path_factory) -> Path:
    from gate.model import export_to_onnx

    path = tmp_path_factory.mktemp("plain") / "net.onnx"
    export_to_onnx(_Net(), torch.rand(2, 1, 8, 8), path)
    return path


def _point_external_data_at(source: Path, model_path: Path, location: str) -> None:
    """Write ``source`` with every initializer's data at ``location`` (the data itself is written there)."""
    proto = onnx.load(str(source))
    external_data_helper.convert_model_to_external_data(proto, location="weights.bin", size_threshold=0)
    for tensor in proto.graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
    model_path.write_bytes(proto.SerializeToString())


@pytest.mark.parametrize("where", ["parent", "absolute"])
def test_external_data_outside_the_model_folder_is_refused(
    tmp_path, plain_onnx, policy, digits_npz, where
) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 4096)  # a readable file the traversal would reach
    location = "../secret.bin" if where == "parent" else str(secret)
    model = folder / "net.onnx"
    _point_external_data_at(plain_onnx, model, location)
    code, output = check(policy, model, digits_npz, tmp_path / "report")
    assert code == 2
    assert "outside it" in output and str(model) in output
    statement = tmp_path / "statement.json"
    statement.write_text(
        json.dumps(
            {
                "_type": "https://in-toto.io/Statement/v1",
                "predicateType": "https://gate.dev/attestation/verdict/v1",
                "subject": [{"name": "net.onnx", "digest": {"sha256": "0" * 64}}],
                "predicate": {"verdict": "pass", "model": {}, "policy": {}, "data": {}},
            }
        )
    )
    code, output = invoke("verify", "-a", statement, "-m", model)  # hashing refuses it too
    assert code == 2 and "outside it" in output


# --------------------------------------------------------------------- size limits
def test_oversized_model_and_weights_are_refused(
    tmp_path, policy, digits_npz, plain_onnx, monkeypatch
) -> None:
    from gate.model import files

    monkeypatch.setattr(files, "MAX_FILE_BYTES", 1024)
    code, output = check(policy, plain_onnx, digits_npz, tmp_path / "report")
    assert code == 2
    assert "larger than the limit of 1.0 KiB" in output and str(plain_onnx) in output
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "model"))
    weights = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(1024)}, weights)
    code, output = check(policy, "model_factories:make_cnn", digits_npz, tmp_path / "r2", "-w", weights)
    assert code == 2
    assert "weights file is" in output and "larger than the limit" in output and str(weights) in output


def test_oversized_policy_is_refused(tmp_path, policy, monkeypatch) -> None:
    from gate.policy import source

    monkeypatch.setattr(source, "MAX_POLICY_BYTES", 16)
    code, output = invoke("policy", "validate", policy)
    assert code == 2
    assert "the limit is 16" in output and str(policy) in output


def test_oversized_attestation_is_refused(tmp_path, plain_onnx, monkeypatch) -> None:
    from gate.cli import attest_commands

    monkeypatch.setattr(attest_commands, "MAX_STATEMENT_BYTES", 16)
    statement = tmp_path / "statement.json"
    statement.write_text(json.dumps({"padding": "x" * 64}))
    code, output = invoke("verify", "-a", statement, "-m", plain_onnx)
    assert code == 2 and "the limit is 16" in output and str(statement) in output


# --------------------------------------------------------------------- YAML tags
@pytest.mark.parametrize(
    "text",
    [
        'version: 1\nname: !!python/object/apply:os.system ["touch {marker}"]\nchecks: []\n',
        "!!python/object/apply:os.system\nversion: 1\nname: tagged\nchecks:\n"
        "  - {{id: a, kind: accuracy, min: 0.5}}\n",
        "version: 1\nname: tagged\nchecks:\n  - !!python/object:os.system\n    id: a\n"
        "    kind: accuracy\n    min: 0.5\n",
        "version: 1\nname: tagged\ndescription: !!python/name:os.system ''\nchecks:\n"
        "  - {{id: a, kind: accuracy, min: 0.5}}\n",
    ],
    ids=["apply-scalar", "tagged-document", "tagged-check", "python-name"],
)
def test_yaml_python_tags_are_refused(tmp_path, text) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "policy.yaml"
    path.write_text(text.format(marker=marker))
    code, output = invoke("policy", "validate", path)
    assert code == 2, output
    assert "python/" in output and str(path) in output
    assert not marker.exists()


# --------------------------------------------------------------------- markup in reports
def test_reports_escape_markup_from_files_policies_and_class_names(
    tmp_path, digits_cnn_onnx, digits_split
) -> None:
    folder = tmp_path / MARKUP
    folder.mkdir()
    model = folder / f"{LINK}.onnx"
    shutil.copy(digits_cnn_onnx, model)
    data = folder / f"{MARKUP}.npz"
    np.savez(data, x=digits_split["x_test"][:64], y=digits_split["y_test"][:64])
    card = tmp_path / "gate-model.yaml"
    card.write_text(
        json.dumps({"source": str(model), "class_names": [f"{MARKUP}{i}" for i in range(10)]}),
        encoding="utf-8",
    )
    policy = write_policy(
        tmp_path / "policy.yaml",
        f"""
        version: 1
        name: "{MARKUP}"
        description: "{LINK}"
        checks:
          - id: fgsm
            kind: adversarial
            attack: fgsm
            epsilon: 0.3
            min: 0.0
            description: "{MARKUP}"
            examples: 2
        """,
    )
    report_dir = tmp_path / "report"
    code, output = invoke(
        "check", "-p", policy, "--model-card", card, "-d", data, "-o", report_dir, "--device", "cpu"
    )
    assert code in (0, 1), output
    html = (report_dir / "report.html").read_text()
    markdown = (report_dir / "summary.md").read_text()
    assert MARKUP not in html  # (Markdown link syntax means nothing in HTML)
    assert MARKUP not in markdown and LINK not in markdown
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # shown, as text
    assert "default-src 'none'" in html


def _report_with(text: str) -> Report:
    check = CheckResult(
        id=f"id {text}",
        kind="accuracy",
        status="fail",
        severity="block",
        metric="accuracy",
        value=0.5,
        n=10,
        threshold=ThresholdModel(min=0.9),
        message=text,
        findings=[Finding(code=text, message=text, data={text: text})],
        details={"class_names": [text], text: text},
        artifacts=[f"{text}.png"],
    )
    return Report(
        verdict="fail",
        exit_code=1,
        message=text,
        policy=PolicyInfo(name=text, files=[f"{text}.yaml"], sha256="0" * 64),
        model=ModelInfo(source=f"{text}.onnx", sha256="1" * 64, onnx_path=f"{text}.onnx"),
        data=DataInfo(source=f"{text}.npz", sha256="2" * 64, n=10),
        environment=Environment(
            gate="0", python="3", torch="2", onnx="1", onnxruntime="1", platform=text, device=text
        ),
        seed=0,
        confidence=0.95,
        started_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        duration_s=1.0,
        summary=Summary(failed=1),
        checks=[check],
    )


@pytest.mark.parametrize("text", [MARKUP, LINK, "<script>alert(1)</script>", "x</td><td onclick=alert(1)>"])
def test_check_ids_and_names_from_a_crafted_report_are_escaped(tmp_path, text) -> None:
    """A report.json is also input (--baseline, gate merge): its ids and names are escaped like the rest."""
    report = _report_with(text)
    html = HtmlFormat(artifact_root=tmp_path).render(report)
    markdown = MarkdownFormat().render(report)
    if text != LINK:  # Markdown link syntax means nothing in HTML
        assert text not in html
    assert text not in markdown
