"""GitHub Actions annotations (``::error file=…,line=…::``) for the checks of a report.json.

Failing and errored checks become errors, warnings warnings and waived checks notices, each pointing at
the line of the policy file that states the requirement. The action runs it as
``python -m gate.report.annotations gate-report/report.json``.
"""

from __future__ import annotations

import os
import re
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


# gate's own error lines: "path:line:column: field: message" (policy, model card), as gate check prints them.
_LOCATED = re.compile(r"^\s*(?P<file>[^\s:][^:]*):(?P<line>\d+):(?P<col>\d+): (?P<message>.+)$")
# A policy that is not YAML at all: "error: path: not valid YAML (line 3, column 1): problem".
_YAML = re.compile(
    r"^(?:error: )?(?P<file>[^\s:][^:]*): (?P<what>not valid YAML) "
    r"\(line (?P<line>\d+), column (?P<col>\d+)\): (?P<problem>.+)$"
)


def _located_error(line: str) -> dict[str, str] | None:
    """The file, line, column and message of one of gate's located error lines, or None."""
    if match := _LOCATED.match(line):
        return match.groupdict()
    if match := _YAML.match(line.strip()):
        return {**match.groupdict(), "message": f"{match['what']}: {match['problem']}"}
    return None


def log_annotations(log_text: str, root: Path) -> list[str]:
    """Error annotations for a run that wrote no report, from what ``gate check`` printed on stderr:
    one at each ``file:line:column`` it named, else one with its first error line."""
    lines = [line for line in log_text.splitlines() if line.strip()]
    located = [found for line in lines if (found := _located_error(line))]
    if located:
        return [
            f"::error file={escape_property(relative_path(m['file'], root))},line={m['line']},col={m['col']},"
            f"title={escape_property('gate: invalid input')}::{escape_data(m['message'])}"
            for m in located
        ]
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    if errors:
        return [f"::error title=gate::{escape_data(errors[0])}"]
    return []


def main(argv: Sequence[str] | None = None) -> int:
    """Print the annotations of a report.json; a missing or broken report becomes error annotations, from
    ``--log`` (gate check's stderr) where given."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    log = None
    if len(arguments) == 3 and arguments[1] == "--log":
        log = Path(arguments[2])
        arguments = arguments[:1]
    if len(arguments) != 1:
        console.error("usage: python -m gate.report.annotations REPORT_JSON [--log GATE_STDERR]")
        return 2
    path = Path(arguments[0])
    root = Path(os.environ.get("GITHUB_WORKSPACE") or Path.cwd())
    try:
        report = Report.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        from_log = (
            log_annotations(log.read_text(encoding="utf-8", errors="replace"), root)
            if log and log.is_file()
            else []
        )
        for line in from_log:
            console.out(line)
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
