"""The plain report formats (JSON, JUnit XML, Markdown); each renders text and never writes."""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from typing import ClassVar
from xml.sax.saxutils import escape, quoteattr

from gate.report.model import CheckResult, Report


class ReportFormat(ABC):
    """One output format: a name for the CLI, a file name in the report folder, a pure render method."""

    name: ClassVar[str]
    filename: ClassVar[str]

    @abstractmethod
    def render(self, report: Report) -> str:
        """The report as text in this format."""


class JsonFormat(ReportFormat):
    """``report.json``: the complete, schema-valid record of the run."""

    name = "json"
    filename = "report.json"

    def render(self, report: Report) -> str:
        return json.dumps(report.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"


class JunitFormat(ReportFormat):
    """``junit.xml``: one testcase per check, so CI systems render the gate like a test suite."""

    name = "junit"
    filename = "junit.xml"

    def render(self, report: Report) -> str:
        summary = report.summary
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<testsuites name={quoteattr("gate")} tests="{len(report.checks)}" '
            f'failures="{summary.failed}" errors="{summary.errored}" time="{report.duration_s:.3f}">',
            f'  <testsuite name={quoteattr(_xml_text("gate: " + report.policy.name))} tests="{len(report.checks)}" '
            f'failures="{summary.failed}" errors="{summary.errored}" skipped="{summary.waived + summary.warned}" '
            f'time="{report.duration_s:.3f}">',
        ]
        for check in report.checks:
            lines.extend(_testcase(check))
        lines += ["  </testsuite>", "</testsuites>", ""]
        return "\n".join(lines)


# Characters XML 1.0 cannot carry at all, not even escaped (control characters, lone surrogates).
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    """Text safe for XML: invalid characters (an ANSI colour code in a message, say) become U+FFFD."""
    return _XML_INVALID.sub("\ufffd", text)


def _testcase(check: CheckResult) -> list[str]:
    opening = (
        f"    <testcase classname={quoteattr(_xml_text('gate.' + check.kind))} name={quoteattr(_xml_text(check.id))} "
        f'time="{check.duration_s:.3f}"'
    )
    message = _xml_text(check.message)
    body = {
        "fail": f'      <failure message={quoteattr(message)} type="threshold">{escape(message)}</failure>',
        "error": f'      <error message={quoteattr(message)} type="error">{escape(message)}</error>',
        # A warn check failed its threshold but does not block: not a pass, and not a failure either.
        # <skipped> is what CI test views show as neither; the type says which.
        "warn": f'      <skipped type="warn" message={quoteattr("warn (does not block): " + message)}/>',
        "waived": f'      <skipped type="waived" message={quoteattr("waived: " + message)}/>',
    }.get(check.status)
    output = f"      <system-out>{escape(message)}</system-out>"
    if body is None:
        return [opening + ">", output, "    </testcase>"]
    return [opening + ">", body, output, "    </testcase>"]


# The punctuation through which text could become Markdown: links and images ([), emphasis (* _ ~), code (`),
# headings (#), table cells (|) and the backslash itself. (< > & are HTML-escaped before.)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]#|~])")


def _cell(text: str) -> str:
    """Text from a policy, model or data set as inert Markdown, safe in a table cell or a list item.

    HTML is escaped, Markdown punctuation is backslash-escaped (the backslash first, so ``\\|`` cannot
    un-escape a pipe), and every kind of line break becomes a space so text cannot start a new row or block.
    """
    text = escape(text)
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return _one_line(text)


def _one_line(text: str) -> str:
    """Line breaks of every kind become spaces; other control characters (ANSI codes) become U+FFFD."""
    return _xml_text(re.sub(r"\r\n|\r|\n|\u2028|\u2029", " ", text))


def _code(text: str) -> str:
    """Monospace text that stays inert: an HTML <code> element around escaped Markdown.

    A Markdown code span would show ``&lt;`` literally and would end at the first backtick in the text.
    """
    return f"<code>{_cell(text)}</code>"


class MarkdownFormat(ReportFormat):
    """``summary.md``: a compact summary for a GitHub step summary or a pull request comment."""

    name = "markdown"
    filename = "summary.md"
    ICONS: ClassVar[dict[str, str]] = {
        "pass": "✅ pass",
        "fail": "❌ fail",
        "warn": "⚠️ warn",
        "waived": "🟦 waived",
        "error": "💥 error",
    }

    def render(self, report: Report) -> str:
        verdict = {"pass": "✅ PASS", "fail": "❌ FAIL", "error": "💥 ERROR"}[report.verdict]
        lines = [
            f"## gate: {verdict}",
            "",
            f"Policy **{_cell(report.policy.name)}** · model {_code(report.model.source)} "
            f"(sha256 {_code((report.model.sha256 or '')[:12])}) · {report.data.n} samples · "
            f"device {_cell(report.environment.device)}",
            "",
        ]
        if report.message:
            lines += [f"> {_cell(report.message)}", ""]
        lines += [
            "| Check | Kind | Status | Metric | Value | Interval | Threshold |",
            "|---|---|---|---|---|---|---|",
        ]
        for check in report.checks:
            lines.append(
                f"| {_cell(check.id)} | {_cell(check.kind)} | {self.ICONS[check.status]} | {_cell(check.metric)} | "
                f"{_number(check.value)} | {_interval(check)} | {_threshold(check)} |"
            )
        problems = [check for check in report.checks if check.status != "pass"]
        if problems:
            lines += ["", "### Details", ""]
            lines += [
                f"- **{_cell(check.id)}** ({check.status}): {_cell(check.message)}" for check in problems
            ]
        for label, names in (
            ("Expired waivers", report.expired_waivers),
            ("Stale waivers", report.stale_waivers),
        ):
            if names:
                lines += ["", f"{label}: " + ", ".join(_code(name) for name in names)]
        return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _interval(check: CheckResult) -> str:
    if check.interval is None:
        return "–"
    return f"[{check.interval.lower:.4g}, {check.interval.upper:.4g}]"


def _threshold(check: CheckResult) -> str:
    parts = []
    if check.threshold.min is not None:
        parts.append(f"≥ {check.threshold.min:.4g}")
    if check.threshold.max is not None:
        parts.append(f"≤ {check.threshold.max:.4g}")
    if check.threshold.max_drop is not None:
        parts.append(f"drop ≤ {check.threshold.max_drop:.4g}")
    return ", ".join(parts) or "–"
