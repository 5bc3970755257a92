"""Reports: the report model, its formats, and atomic writing of the report folder."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

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
    """Render every requested format and write it into ``directory``; returns the written paths."""
    written = []
    configured = formats_for(directory)
    for name in formats or configured:
        fmt = configured[name]
        path = directory / fmt.filename
        write_atomic(path, fmt.render(report))
        written.append(path)
    return written


__all__ = ["FORMATS", "CheckResult", "Report", "ReportFormat", "write_atomic", "write_reports"]
