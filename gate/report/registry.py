"""Every report format gate writes, by the name the CLI uses; a test asserts the mapping is exhaustive."""

from __future__ import annotations

from pathlib import Path

from gate.report.formats import JsonFormat, JunitFormat, MarkdownFormat, ReportFormat
from gate.report.html import HtmlFormat
from gate.report.sarif import SarifFormat

FORMATS: dict[str, ReportFormat] = {
    fmt.name: fmt for fmt in (JsonFormat(), JunitFormat(), MarkdownFormat(), HtmlFormat(), SarifFormat())
}


def formats_for(report_dir: Path) -> dict[str, ReportFormat]:
    """The formats configured for one report folder (the HTML page embeds the evidence found there)."""
    return {**FORMATS, HtmlFormat.name: HtmlFormat(artifact_root=report_dir)}
