"""Reports: the report model, its formats, atomic writing of the report folder, and reading one back as a baseline."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from gate.errors import UsageError
from gate.report.formats import ReportFormat
from gate.report.model import CheckResult, Report
from gate.report.registry import FORMATS, formats_for


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see the old content or the new, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; reports are meant to be read by others
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_reports(report: Report, directory: Path, formats: Iterable[str] | None = None) -> list[Path]:
    """Render every requested format and write it into ``directory``; returns the written paths.

    All or nothing: everything is rendered first, ``report.json`` (what the action and ``gate attest``
    read the verdict from) is written last, and if any write fails (a full disk) the files written so
    far are removed, so no partial set is left that a reader could take for a complete one.
    """
    configured = formats_for(directory)
    rendered = [
        (directory / configured[name].filename, configured[name].render(report))
        for name in formats or configured
    ]
    rendered.sort(key=lambda item: item[0].name == "report.json")
    written: list[Path] = []
    try:
        for path, text in rendered:
            write_atomic(path, text)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def load_baseline(path: Path) -> dict[str, CheckResult]:
    """Results of a previous run by check id, for ``max_drop``."""
    try:
        report = Report.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise UsageError("baseline report not found", path=path) from None
    except (ValidationError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        raise UsageError(f"not a gate report.json: {first}", path=path) from None
    return {check.id: check for check in report.checks}


__all__ = [
    "FORMATS",
    "CheckResult",
    "Report",
    "ReportFormat",
    "load_baseline",
    "write_atomic",
    "write_reports",
]
