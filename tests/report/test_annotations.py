"""GitHub annotations from report.json: one workflow command per non-passing check, escaped."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gate.report.annotations import annotation, annotations, escape_data, escape_property, main
from gate.report.formats import JsonFormat
from gate.report.model import (
    CheckResult,
    DataInfo,
    Environment,
    Location,
    ModelInfo,
    PolicyInfo,
    Report,
    Summary,
    ThresholdModel,
)


def check(status: str, **changes: object) -> CheckResult:
    fields: dict[str, object] = {
        "id": f"{status}-check",
        "kind": "accuracy",
        "status": status,
        "severity": "block",
        "metric": "accuracy",
        "value": 0.8,
        "n": 100,
        "threshold": ThresholdModel(min=0.9),
        "message": "accuracy below min",
        "location": Location(path="/repo/policies/p.yaml", line=3, column=5),
    }
    fields.update(changes)
    return CheckResult(**fields)


def report_with(checks: list[CheckResult]) -> Report:
    return Report(
        verdict="fail",
        exit_code=1,
        policy=PolicyInfo(name="p", files=[], sha256=""),
        model=ModelInfo(source="m.onnx"),
        data=DataInfo(source="d.npz"),
        environment=Environment(
            gate="0", python="3", torch="2", onnx="1", onnxruntime="1", platform="x", device="cpu"
        ),
        seed=0,
        confidence=0.95,
        started_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        duration_s=0.0,
        summary=Summary(),
        checks=checks,
    )


@pytest.mark.parametrize(
    ("status", "command"), [("fail", "error"), ("error", "error"), ("warn", "warning"), ("waived", "notice")]
)
def test_each_status_maps_to_a_command(status: str, command: str) -> None:
    line = annotation(check(status), Path("/repo"))
    assert line is not None and line.startswith(f"::{command} file=policies/p.yaml,line=3,col=5,title=")


def test_passing_checks_are_not_annotated() -> None:
    assert annotation(check("pass"), Path("/repo")) is None
    assert annotations(report_with([check("pass"), check("fail")]), Path("/repo"))[0].startswith("::error")


def test_paths_outside_the_workspace_stay_absolute_and_no_location_means_no_file() -> None:
    assert "file=/repo/policies/p.yaml," in annotation(check("fail"), Path("/elsewhere"))
    assert annotation(check("error", location=None), Path("/repo")).startswith("::error title=")


def test_escaping_follows_the_toolkit() -> None:
    assert escape_data("50%\r\nnext") == "50%25%0D%0Anext"
    assert escape_property("a:b,c%") == "a%3Ab%2Cc%25"
    line = annotation(check("fail", id="x", message="line one\n::warning::forged"), Path("/repo"))
    assert "\n" not in line and "%0A::warning::forged" in line


def test_main_prints_annotations_of_a_report_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "report.json"
    path.write_text(JsonFormat().render(report_with([check("fail")])))
    assert main([str(path)]) == 0
    assert capsys.readouterr().out.startswith("::error ")


def test_main_turns_a_missing_or_broken_report_into_one_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "missing.json")]) == 0
    assert "::error title=gate::gate wrote no" in capsys.readouterr().out
    (tmp_path / "broken.json").write_text("{}")
    assert main([str(tmp_path / "broken.json")]) == 0
    assert "is not a gate report" in capsys.readouterr().out
    assert main([]) == 2


def test_a_run_without_a_report_is_annotated_from_gate_s_stderr(tmp_path: Path, capsys) -> None:
    log = tmp_path / "gate-stderr.log"
    log.write_text(
        "error: invalid policy (2 problems):\n"
        "  /repo/policies/p.yaml:8:5: checks[1].min: Input should be a valid number\n"
        "  policies/p.yaml:9:3: waivers[0].expires: expected a date, found '20270331'\n"
    )
    assert main([str(tmp_path / "report.json"), "--log", str(log)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("::error file=")
    assert lines[0].endswith(
        ",line=8,col=5,title=gate%3A invalid input::checks[1].min: Input should be a valid number"
    )
    assert lines[1] == (
        "::error file=policies/p.yaml,line=9,col=3,title=gate%3A invalid input::"
        "waivers[0].expires: expected a date, found '20270331'"
    )
    assert lines[2].startswith("::error title=gate::gate wrote no")


def test_an_unlocated_error_becomes_one_annotation(tmp_path: Path, capsys) -> None:
    log = tmp_path / "gate-stderr.log"
    log.write_text("gate 0.1.0 · loading\nerror: model.onnx: model file not found\n  hint: check the path\n")
    main([str(tmp_path / "report.json"), "--log", str(log)])
    assert capsys.readouterr().out.splitlines()[0] == "::error title=gate::model.onnx: model file not found"


def test_a_policy_that_is_not_yaml_is_annotated_at_its_line(tmp_path: Path, capsys) -> None:
    log = tmp_path / "gate-stderr.log"
    log.write_text("error: policies/p.yaml: not valid YAML (line 3, column 1): expected ',' or ']'\n")
    assert main([str(tmp_path / "report.json"), "--log", str(log)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (
        "::error file=policies/p.yaml,line=3,col=1,title=gate%3A invalid input::"
        "not valid YAML: expected ',' or ']'"
    )
