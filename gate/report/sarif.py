"""``report.sarif``: failing, warning and errored checks as SARIF 2.1.0 results located in the policy file.

Code-scanning tools (GitHub's among them) then show each problem on the line of the policy that states the
requirement; waived checks appear as suppressed results, so the exception stays visible.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gate import __version__
from gate.policy.specs import ALL_CHECK_SPECS, kind_of
from gate.report.formats import ReportFormat
from gate.report.model import CheckResult, Report

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SOURCE_ROOT = "%SRCROOT%"

LEVELS = {"fail": "error", "error": "error", "warn": "warning", "waived": "error"}


def rule_descriptions() -> dict[str, str]:
    """One short description per check kind, from the first line of its spec's docstring."""
    return {
        kind_of(spec): (spec.__doc__ or kind_of(spec)).strip().splitlines()[0] for spec in ALL_CHECK_SPECS
    }


class SarifFormat(ReportFormat):
    """``report.sarif``: one result per failing, warning, errored or waived check.

    Args:
        source_root: The repository root that result locations are made relative to (``%SRCROOT%``);
            ``None`` uses the working directory at render time. Policy files outside it keep an absolute
            ``file://`` URI.
    """

    name = "sarif"
    filename = "report.sarif"

    def __init__(self, source_root: Path | None = None) -> None:
        self.source_root = source_root

    def render(self, report: Report) -> str:
        root = (self.source_root or Path.cwd()).resolve()
        rules = self._rules(report)
        rule_index = {rule["id"]: index for index, rule in enumerate(rules)}
        results = [self._result(check, rule_index, root) for check in report.checks if check.status in LEVELS]
        run: dict[str, Any] = {
            "tool": {
                "driver": {
                    "name": "gate",
                    "version": __version__,
                    "semanticVersion": __version__,
                    "rules": rules,
                }
            },
            "originalUriBaseIds": {SOURCE_ROOT: {"uri": root.as_uri() + "/"}},
            "invocations": [
                {
                    "executionSuccessful": report.verdict != "error",
                    "exitCode": report.exit_code,
                    "startTimeUtc": report.started_at.isoformat().replace("+00:00", "Z"),
                }
            ],
            "results": results,
            "properties": {
                "verdict": report.verdict,
                "policy": report.policy.name,
                "policySha256": report.policy.sha256,
                "model": report.model.source,
                "modelSha256": report.model.sha256,
                "samples": report.data.n,
            },
        }
        log = {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}
        return json.dumps(log, indent=2) + "\n"

    def _rules(self, report: Report) -> list[dict[str, Any]]:
        descriptions = rule_descriptions()
        kinds = list(descriptions) + [check.kind for check in report.checks if check.kind not in descriptions]
        return [
            {
                "id": kind,
                "name": "".join(part.capitalize() for part in kind.split("_")),
                "shortDescription": {"text": descriptions.get(kind, f"gate check kind {kind}")},
                "defaultConfiguration": {"level": "error"},
                "properties": {"tags": ["ml", "deployment-gate"]},
            }
            for kind in dict.fromkeys(kinds)
        ]

    def _result(self, check: CheckResult, rule_index: dict[str, int], root: Path) -> dict[str, Any]:
        result: dict[str, Any] = {
            "ruleId": check.kind,
            "ruleIndex": rule_index[check.kind],
            "level": LEVELS[check.status],
            "message": {"text": result_message(check)},
            "partialFingerprints": {"gateCheck/v1": f"{check.kind}/{check.id}"},
            "properties": {
                "checkId": check.id,
                "status": check.status,
                "metric": check.metric,
                "value": check.value,
                "n": check.n,
            },
        }
        location = self._location(check, root)
        if location is not None:
            result["locations"] = [location]
        if check.status == "waived" and check.waiver is not None:
            waiver = check.waiver
            result["suppressions"] = [
                {
                    "kind": "external",
                    "status": "accepted",
                    "justification": f"{waiver.reason} (approved by {waiver.approved_by}, "
                    f"expires {waiver.expires.isoformat()})",
                }
            ]
        return result

    def _location(self, check: CheckResult, root: Path) -> dict[str, Any] | None:
        if check.location is None:
            return None
        artifact = artifact_location(Path(check.location.path), root)
        physical: dict[str, Any] = {"artifactLocation": artifact}
        if check.location.line:
            region: dict[str, int] = {"startLine": check.location.line}
            if check.location.column:
                region["startColumn"] = check.location.column
            physical["region"] = region
        return {"physicalLocation": physical, "message": {"text": f"check {check.id}"}}


def artifact_location(path: Path, root: Path) -> dict[str, str]:
    """A URI relative to the repository root where the file lies under it, else an absolute file URI."""
    absolute = path if path.is_absolute() else (root / path)
    try:
        relative = absolute.resolve().relative_to(root)
    except ValueError:
        return {"uri": absolute.resolve().as_uri()}
    return {"uri": relative.as_posix(), "uriBaseId": SOURCE_ROOT}


def result_message(check: CheckResult) -> str:
    """The check's message with the numbers a reviewer needs: value, interval, threshold, sample count."""
    numbers = [f"{check.metric} = {'n/a' if check.value is None else f'{check.value:.4g}'}"]
    if check.interval is not None:
        interval = check.interval
        numbers.append(
            f"{interval.confidence:.0%} interval [{interval.lower:.4g}, {interval.upper:.4g}] ({interval.method})"
        )
    thresholds = [
        f"{label} {value:.4g}"
        for label, value in (
            ("min", check.threshold.min),
            ("max", check.threshold.max),
            ("max_drop", check.threshold.max_drop),
        )
        if value is not None
    ]
    if thresholds:
        numbers.append("threshold " + ", ".join(thresholds))
    numbers.append(f"n = {check.n}")
    return f"{check.id} ({check.status}): {check.message} [{'; '.join(numbers)}]"
