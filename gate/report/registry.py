"""Every report format gate writes, by the name the CLI uses; a test asserts the mapping is exhaustive."""

from __future__ import annotations

from gate.report.formats import JsonFormat, JunitFormat, MarkdownFormat, ReportFormat

FORMATS: dict[str, ReportFormat] = {fmt.name: fmt for fmt in (JsonFormat(), JunitFormat(), MarkdownFormat())}
