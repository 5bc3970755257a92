"""The JSON, JUnit and Markdown formats, hostile text in all of them, and the exhaustive format registry."""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET

import jsonschema
import pytest

from gate.report import write_atomic
from gate.report.formats import JsonFormat, JunitFormat, MarkdownFormat, ReportFormat
from gate.report.model import (
    CheckResult,
    DataInfo,
    Environment,
    Finding,
    IntervalModel,
    ModelInfo,
    PolicyInfo,
    Regression,
    Report,
    Summary,
    ThresholdModel,
    WaiverState,
)
from gate.report.registry import FORMATS

HOSTILE = (
    "<script>alert(1)</script> | a\\|b ![x](https://evil.example/p.png) **bold** `tick` \r# heading\x1b[31m"
)


def result(status: str, **changes: object) -> CheckResult:
    fields: dict[str, object] = {
        "id": f"{status}-check",
        "kind": "accuracy",
        "status": status,
        "severity": "warn" if status == "warn" else "block",
        "metric": "accuracy",
        "value": 0.9,
        "interval": IntervalModel(lower=0.88, upper=0.92, confidence=0.95, method="clopper-pearson"),
        "n": 1000,
        "successes": 900,
        "threshold": ThresholdModel(min=0.85, max_drop=0.01),
        "message": f"{status}: accuracy = 0.9",
    }
    fields.update(changes)
    return CheckResult(**fields)


def sample_report(*, hostile: bool = False) -> Report:
    text = HOSTILE if hostile else "plain"
    expiry = dt.date(2026, 1, 31)
    checks = [
        result("pass"),
        result(
            "fail",
            message=f"lower bound 0.88 is below min 0.95. {text}",
            samples_to_decide=4200,
            regression=Regression(
                baseline_value=0.95, difference=-0.05, drop_lower_bound=0.03, max_drop=0.01, regressed=True
            ),
            findings=[Finding(code="F1", message=text, data={"eps": 0.03, "nested": {"a": [1, 2]}})],
            details={"per_class": {"cat": 0.8, text: 0.9}},
            artifacts=["fail-check/examples.png"],
        ),
        result("warn", message=text),
        result(
            "waived",
            message=f"waived {text}",
            waiver=WaiverState(reason=text, approved_by="lead@example.com", expires=expiry, state="active"),
        ),
        result("error", value=None, interval=None, n=0, successes=None, message=f"crashed: {text}"),
        result(
            "fail",
            id="expired-check",
            waiver=WaiverState(reason="old", approved_by="x", expires=expiry, state="expired"),
        ),
    ]
    if hostile:
        checks.append(result("fail", id=f"class {HOSTILE}", metric=f"m|{HOSTILE}", message=HOSTILE))
    return Report(
        verdict="error",
        exit_code=3,
        message=f"1 check could not complete {text}",
        policy=PolicyInfo(name=f"release {text}", files=["policy.yaml"], sha256="a" * 64),
        model=ModelInfo(source=f"model_{text}.onnx", sha256="b" * 64, provider="CPUExecutionProvider"),
        data=DataInfo(source="digits.npz", sha256="c" * 64, n=1000),
        environment=Environment(
            gate="0.1.0",
            python="3.11",
            torch="2.4",
            onnx="1.16",
            onnxruntime="1.18",
            platform="linux",
            device=f"cpu {text}",
        ),
        seed=0,
        confidence=0.95,
        started_at=dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.timezone.utc),
        duration_s=12.5,
        timings={"load": 1.0},
        summary=Summary(passed=1, failed=2 + hostile, warned=1, waived=1, errored=1),
        checks=checks,
        stale_waivers=["pass-check"],
        expired_waivers=["expired-check"],
    )


@pytest.mark.parametrize("hostile", [False, True])
def test_json_round_trips_and_validates_against_the_report_schema(hostile: bool) -> None:
    report = sample_report(hostile=hostile)
    text = JsonFormat().render(report)

    assert Report.model_validate_json(text) == report
    schema = Report.model_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(text), schema)


def test_report_schema_rejects_a_report_with_an_unknown_status() -> None:
    document = json.loads(JsonFormat().render(sample_report()))
    document["checks"][0]["status"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, Report.model_json_schema())


@pytest.mark.parametrize("hostile", [False, True])
def test_junit_has_one_testcase_per_check_with_the_right_element(hostile: bool) -> None:
    report = sample_report(hostile=hostile)
    root = ET.fromstring(JunitFormat().render(report).encode("utf-8"))

    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    # (XML cannot carry the hostile id's ESC character; it becomes U+FFFD)
    assert [case.get("name") for case in cases] == [
        check.id.replace("\x1b", "\ufffd") for check in report.checks
    ]
    children = {
        case.get("name"): [child.tag for child in case if child.tag != "system-out"] for case in cases
    }
    assert children["pass-check"] == []
    assert children["fail-check"] == ["failure"] and children["expired-check"] == ["failure"]
    assert children["error-check"] == ["error"]
    # A warn check is neither a pass nor a failure: skipped, with its type, as CI test views show it.
    assert children["warn-check"] == ["skipped"] and children["waived-check"] == ["skipped"]
    skipped = {case.get("name"): case.find("skipped") for case in cases if case.find("skipped") is not None}
    assert skipped["warn-check"].get("type") == "warn" and skipped["waived-check"].get("type") == "waived"
    assert skipped["warn-check"].get("message").startswith("warn (does not block): ")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == (
        str(len(report.checks)),
        str(report.summary.failed),
        "1",
        str(report.summary.warned + report.summary.waived),
    )
    assert all(case.get("classname") == "gate.accuracy" for case in cases)
    failure = cases[1].find("failure")
    assert failure.get("message").startswith("lower bound 0.88 is below min 0.95")


def test_junit_keeps_hostile_text_as_text() -> None:
    root = ET.fromstring(JunitFormat().render(sample_report(hostile=True)).encode("utf-8"))
    hostile_case = root.find("testsuite").findall("testcase")[-1]
    assert hostile_case.get("name") == f"class {HOSTILE}".replace("\x1b", "\ufffd")
    # the script is text in the XML, and the control character became U+FFFD instead of breaking it
    assert "<script>alert(1)</script>" in hostile_case.find("failure").text
    assert "\ufffd[31m" in hostile_case.find("failure").get("message")
    assert root.find("testsuite/testcase/script") is None


def table_cells(line: str) -> list[str]:
    """Split a Markdown table row on pipes that are not backslash-escaped (an even run of backslashes)."""
    return re.split(r"(?<!\\)(?:\\\\)*\|", line)[1:-1]


def test_markdown_summary_lists_every_check_and_the_problems() -> None:
    text = MarkdownFormat().render(sample_report())
    assert text.startswith("## gate: 💥 ERROR")
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| Check")]
    assert len(rows) == len(sample_report().checks)
    assert "| 0.9 | [0.88, 0.92] | ≥ 0.85, drop ≤ 0.01 |" in rows[0]
    assert "- **error-check** (error): crashed: plain" in text
    assert "Expired waivers: <code>expired-check</code>" in text
    assert "Stale waivers: <code>pass-check</code>" in text
    assert "model <code>model\\_plain.onnx</code>" in text


def test_markdown_escapes_hostile_text() -> None:
    report = sample_report(hostile=True)
    text = MarkdownFormat().render(report)

    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "![x](" not in text and "**bold**" not in text
    assert "\r" not in text and "\x1b" not in text
    # no hostile line break started a heading or a new row
    assert not any(line.startswith("# ") for line in text.splitlines())
    header, rule, *rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table_cells(header)) == 7
    assert all(len(table_cells(row)) == 7 for row in [rule, *rows]), rows
    assert len(rows) == len(report.checks)
    # the model source stays one code element, whatever backticks it contains
    model_line = next(line for line in text.splitlines() if line.startswith("Policy **"))
    assert model_line.count("<code>") == 2 and "\\`tick\\`" in model_line


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path) -> None:
    target = tmp_path / "deep" / "report.json"
    write_atomic(target, "first")
    write_atomic(target, "second ✅")
    assert target.read_text(encoding="utf-8") == "second ✅"
    assert [path.name for path in target.parent.iterdir()] == ["report.json"]


def all_subclasses(cls: type) -> set[type]:
    return {sub for direct in cls.__subclasses__() for sub in {direct, *all_subclasses(direct)}}


def test_format_registry_is_exhaustive_and_names_match_the_classes() -> None:
    assert {type(fmt) for fmt in FORMATS.values()} == all_subclasses(ReportFormat)
    for name, fmt in FORMATS.items():
        assert fmt.name == name
    filenames = [fmt.filename for fmt in FORMATS.values()]
    assert len(set(filenames)) == len(filenames)
    assert {"json", "junit", "markdown"} <= set(FORMATS)


@pytest.mark.parametrize("name", sorted(FORMATS))
@pytest.mark.parametrize("hostile", [False, True])
def test_every_registered_format_renders(name: str, hostile: bool) -> None:
    text = FORMATS[name].render(sample_report(hostile=hostile))
    assert isinstance(text, str) and text.strip()
    text.encode("utf-8")


def test_numpy_values_in_details_and_findings_do_not_break_any_format() -> None:
    import numpy as np

    report = sample_report()
    check = report.checks[1].model_copy(update={"details": {}, "findings": []})
    check = CheckResult.model_validate(
        {
            **check.model_dump(),
            "details": {"count": np.int64(3), "per_class": np.array([0.5, 0.75]), "flag": np.bool_(True)},
            "findings": [{"code": "F", "message": "m", "data": {"eps": np.float32(0.25), 7: np.int32(2)}}],
        }
    )
    assert check.details == {"count": 3, "per_class": [0.5, 0.75], "flag": True}
    assert check.findings[0].data == {"eps": 0.25, "7": 2}
    report = report.model_copy(update={"checks": [check]})
    for fmt in FORMATS.values():
        assert fmt.render(report)
    assert Report.model_validate_json(JsonFormat().render(report)) == report
