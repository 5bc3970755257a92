"""GitHub Actions annotations (``::error file=…,line=…::``) for the checks of a report.json.

Failing and errored checks become errors, warnings warnings and waived checks notices, each pointing at
the line of the policy file that states the requirement. The action runs it as
``python -m gate.report.annotations gate-report/report.json``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from gate import console
from gate.report.model import CheckResult, Report
from gate.report.sarif import result_message

COMMANDS = {"fail": "error", "error": "error", "warn": "warning", "waived": "notice"}


def escape_data(text: str) -> str:
    """Escape a workflow command's message, as GitHub's toolkit does."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command's property value (``file=``, ``title=``): also ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def relative_path(path: str, root: Path) -> str:
    """The policy path relative to the workspace, which is how GitHub matches annotations to files."""
    candidate = Path(path)
    if not candidate.is_absolute():
        return candidate.as_posix()
    try:
        return candidate.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return candidate.as_posix()


def annotation(check: CheckResult, root: Path) -> str | None:
    """The workflow command for one check, or ``None`` for a passing check."""
    command = COMMANDS.get(check.status)
    if command is None:
        return None
    properties = []
    if check.location is not None:
        properties.append(f"file={escape_property(relative_path(check.location.path, root))}")
        if check.location.line:
            properties.append(f"line={check.location.line}")
        if check.location.column:
            properties.append(f"col={check.location.column}")
    properties.append(f"title={escape_property(f'gate {check.status}: {check.id} ({check.kind})')}")
    return f"::{command} {','.join(properties)}::{escape_data(result_message(check))}"


def annotations(report: Report, root: Path) -> list[str]:
    """One workflow command per failing, errored, warning or waived check, in report order."""
    return [line for line in (annotation(check, root) for check in report.checks) if line is not None]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the annotations of a report.json; a missing or broken report becomes one error annotation."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 1:
        console.error("usage: python -m gate.report.annotations REPORT_JSON")
        return 2
    path = Path(arguments[0])
    root = Path(os.environ.get("GITHUB_WORKSPACE") or Path.cwd())
    try:
        report = Report.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        console.out(
            f"::error title=gate::{escape_data(f'gate wrote no {path}; see the gate check step log')}"
        )
        return 0
    except (ValidationError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        console.out(f"::error title=gate::{escape_data(f'{path} is not a gate report: {first}')}")
        return 0
    for line in annotations(report, root):
        console.out(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
