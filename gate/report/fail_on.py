"""Which checks may fail the job: the action's ``fail-on`` input (as Checkov's ``--hard-fail-on``).

``fail`` follows gate's exit code; ``never`` reports only; otherwise a comma-separated list of check ids
and severities (``block``, ``warn``): the job fails when a listed check, or a check of a listed severity,
did not pass (``fail``, ``error`` or ``warn``; a waived check does not). An invalid invocation (exit 2,
no report) always fails the job, and so does a list naming a check the report does not have: a typo must
not turn the gate off. The action runs ``python -m gate.report.fail_on REPORT_JSON FAIL_ON EXIT_CODE``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from gate import console
from gate.report.model import Report

SEVERITIES = ("block", "warn")
NOT_PASSING = ("fail", "error", "warn")


@dataclass(frozen=True)
class Decision:
    """Whether the job fails, and the one line that says why."""

    fails: bool
    reason: str


def parse_fail_on(text: str) -> list[str]:
    """The items of a ``fail-on`` list; empty items and surrounding spaces are ignored."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError("fail-on is empty: expected fail, never, or check ids and severities (block, warn)")
    return items


def decide(report: Report | None, fail_on: str, exit_code: int) -> Decision:
    """The job's outcome for ``fail_on`` given gate's report (None when it wrote none) and exit code."""
    mode = fail_on.strip()
    if mode == "never":
        return Decision(False, f"fail-on is never: exit {exit_code} is reported only")
    if mode == "fail":
        return Decision(exit_code != 0, f"gate exited {exit_code}")
    items = parse_fail_on(mode)
    if report is None or exit_code == 2:
        return Decision(True, f"gate exited {exit_code} without a report: nothing was decided")
    ids = {check.id for check in report.checks}
    unknown = [item for item in items if item not in ids and item not in SEVERITIES]
    if unknown:
        return Decision(True, f"fail-on names {', '.join(unknown)}, which the report has no check for")
    selected = [c for c in report.checks if c.id in items or c.severity in items]
    failing = [c for c in selected if c.status in NOT_PASSING]
    if failing:
        listed = ", ".join(f"{c.id} ({c.status})" for c in failing)
        return Decision(True, f"checks selected by fail-on did not pass: {listed}")
    return Decision(False, f"the {len(selected)} checks selected by fail-on passed or are waived")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the decision; exit 1 when the job fails, 0 when it does not, 2 for a bad invocation."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 3:
        console.error("usage: python -m gate.report.fail_on REPORT_JSON FAIL_ON EXIT_CODE")
        return 2
    path, fail_on, code = Path(arguments[0]), arguments[1], arguments[2]
    try:
        exit_code = int(code or "3")
        report = Report.model_validate_json(path.read_bytes()) if path.is_file() else None
        decision = decide(report, fail_on, exit_code)
    except (ValidationError, ValueError) as exc:
        console.error(f"fail-on: {str(exc).splitlines()[0]}")
        return 2
    console.out(f"gate: {decision.reason}; the job {'fails' if decision.fails else 'succeeds'}")
    return 1 if decision.fails else 0


if __name__ == "__main__":
    sys.exit(main())
