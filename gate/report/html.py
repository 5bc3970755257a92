"""``report.html``: one self-contained page (inline CSS, images as data: URIs) with the verdict and evidence.

Everything that comes from a policy, a model, a data set or an artifact is escaped, and a Content Security
Policy forbids scripts and network loads, so a hostile class name or file name can neither run code nor
phone home when a reviewer opens the page.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from html import escape
from pathlib import Path
from typing import Any

from gate.report.formats import ReportFormat
from gate.report.model import CheckResult, Finding, Report

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
MAX_IMAGE_BYTES = 8 * 1024 * 1024
MAX_LIST_ITEMS = 64
MAX_DEPTH = 4

CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STATUS_LABELS = {"pass": "PASS", "fail": "FAIL", "warn": "WARN", "waived": "WAIVED", "error": "ERROR"}

STYLE = """
:root { --pass: #1a7f37; --fail: #cf222e; --warn: #9a6700; --waived: #0969da; --error: #8250df;
        --line: #d0d7de; --muted: #57606a; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 0 auto;
       max-width: 1200px; padding: 24px; }
h1 { margin: 0 0 4px; font-size: 18px; color: var(--muted); font-weight: 600; }
.verdict { font-size: 44px; font-weight: 800; letter-spacing: 1px; padding: 16px 24px; border-radius: 8px;
           color: #fff; margin: 8px 0 4px; }
.verdict.pass { background: var(--pass); } .verdict.fail { background: var(--fail); }
.verdict.error { background: var(--error); }
.verdict small { display: block; font-size: 16px; font-weight: 500; letter-spacing: 0; }
.meta { color: var(--muted); margin: 8px 0 16px; }
.meta span { margin-right: 16px; display: inline-block; max-width: 100%; }
.counts span { margin-right: 12px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.status { font-weight: 700; white-space: nowrap; }
.status.pass { color: var(--pass); } .status.fail { color: var(--fail); } .status.warn { color: var(--warn); }
.status.waived { color: var(--waived); } .status.error { color: var(--error); }
section.check { border-top: 2px solid var(--line); margin-top: 24px; padding-top: 8px; }
section.check h2 { font-size: 20px; margin: 8px 0; }
.message { font-size: 16px; padding: 8px 12px; background: #f6f8fa; border-left: 4px solid var(--line); }
.message.fail { border-color: var(--fail); } .message.warn { border-color: var(--warn); }
.message.error { border-color: var(--error); } .message.waived { border-color: var(--waived); }
.note { color: var(--muted); font-style: italic; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; border: 1px solid var(--line); padding: 6px; border-radius: 4px; max-width: 100%; box-sizing: border-box; }
figure img { display: block; max-width: 100%; height: auto; image-rendering: pixelated; min-width: 96px; }
figcaption { font-size: 14px; color: var(--muted); overflow-wrap: anywhere; max-width: 360px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 13px; overflow-wrap: anywhere; }
.bar { display: flex; height: 28px; border-radius: 6px; overflow: hidden; margin: 8px 0 4px; }
.bar span { display: flex; align-items: center; justify-content: center; color: #fff; font-weight: 700;
            font-size: 13px; min-width: 2.5em; }
.bar .pass { background: var(--pass); } .bar .fail { background: var(--fail); } .bar .warn { background: var(--warn); }
.bar .waived { background: var(--waived); } .bar .error { background: var(--error); }
.scroll { overflow-x: auto; max-width: 100%; }
details.passed { margin-top: 24px; border-top: 2px solid var(--line); padding-top: 8px; }
details.passed > summary { font-size: 18px; font-weight: 600; cursor: pointer; }
@media (max-width: 900px) { body { padding: 12px; } .verdict { font-size: 32px; } .meta span { display: block; } }
"""

# Triage order: what needs a reader first (errors, failures), then warnings, waivers, and passes last.
TRIAGE_ORDER = {"error": 0, "fail": 1, "warn": 2, "waived": 3, "pass": 4}


def _text(value: Any) -> str:
    """Escape anything for HTML text and attribute values (quotes included)."""
    return escape(str(value), quote=True)


def _number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not math.isfinite(value):
        return _text(value)
    return f"{value:.{digits}g}"


def _interval(check: CheckResult) -> str:
    if check.interval is None:
        return "–"
    interval = check.interval
    return (
        f"[{_number(interval.lower)}, {_number(interval.upper)}] "
        f"<small>{_number(interval.confidence * 100, 3)}% {_text(interval.method)}</small>"
    )


def _threshold(check: CheckResult) -> str:
    parts = []
    if check.threshold.min is not None:
        parts.append(f"≥ {_number(check.threshold.min)}")
    if check.threshold.max is not None:
        parts.append(f"≤ {_number(check.threshold.max)}")
    if check.threshold.max_drop is not None:
        parts.append(f"drop ≤ {_number(check.threshold.max_drop)}")
    return ", ".join(parts) or "–"


def _status(status: str) -> str:
    return f'<span class="status {_text(status)}">{_text(STATUS_LABELS.get(status, status))}</span>'


def _anchor(index: int) -> str:
    # Check ids come from the policy; an index makes a safe, unique fragment whatever the id contains.
    return f"check-{index}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def render_value(value: Any, depth: int = 0) -> str:
    """Any JSON-like value as HTML: dicts become small tables, lists of numbers an inline list."""
    if depth >= MAX_DEPTH:
        return f"<code>{_text(_shorten(repr(value), 200))}</code>"
    if isinstance(value, dict):
        return _render_mapping(value, depth)
    if isinstance(value, list | tuple):
        return _render_sequence(list(value), depth)
    if _is_number(value):
        return _number(value)
    if value is None:
        return "–"
    return _text(value)


def _render_mapping(mapping: dict[Any, Any], depth: int) -> str:
    if not mapping:
        return "–"
    items = list(mapping.items())
    rows = [
        f"<tr><th>{_text(key)}</th>{_cell(value, depth + 1)}</tr>" for key, value in items[:MAX_LIST_ITEMS]
    ]
    if len(items) > MAX_LIST_ITEMS:
        rows.append(f'<tr><td colspan="2" class="note">… {len(items) - MAX_LIST_ITEMS} more</td></tr>')
    return "<table>" + "".join(rows) + "</table>"


def _cell(value: Any, depth: int) -> str:
    """A table cell; numbers align right so columns of them compare at a glance."""
    css = " class=num" if _is_number(value) else ""
    return f"<td{css}>{render_value(value, depth)}</td>"


def _render_sequence(items: list[Any], depth: int) -> str:
    if not items:
        return "–"
    shown, hidden = items[:MAX_LIST_ITEMS], len(items) - MAX_LIST_ITEMS
    more = f" <span class=note>… {hidden} more</span>" if hidden > 0 else ""
    if all(_is_number(item) or isinstance(item, str) for item in shown):
        return "<code>" + ", ".join(render_value(item, depth + 1) for item in shown) + "</code>" + more
    if all(isinstance(item, dict) for item in shown):
        return _render_records(shown, depth) + more
    return "<ol>" + "".join(f"<li>{render_value(item, depth + 1)}</li>" for item in shown) + "</ol>" + more


def _render_records(records: list[dict[Any, Any]], depth: int) -> str:
    """A list of dicts as one table with a column per key (e.g. corruption levels and accuracies)."""
    columns: list[Any] = []
    for record in records:
        columns.extend(key for key in record if key not in columns)
    header = "".join(f"<th>{_text(column)}</th>" for column in columns)
    rows = [
        "<tr>" + "".join(_cell(record.get(column), depth + 1) for column in columns) + "</tr>"
        for record in records
    ]
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"


def _scroll(html: str) -> str:
    """A box that scrolls sideways, so a wide table (an ε sweep with many columns, per-class numbers)
    never makes the whole page wider than a narrow window."""
    return f"<div class=scroll>{html}</div>"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class HtmlFormat(ReportFormat):
    """``report.html``: the verdict, a table of checks, then each check's evidence with its images.

    Args:
        artifact_root: The report folder that ``CheckResult.artifacts`` are relative to. Images are read
            from it and embedded; without it (or for a missing file) the page notes the artifact instead.
    """

    name = "html"
    filename = "report.html"

    def __init__(self, artifact_root: Path | None = None, source_root: Path | None = None) -> None:
        self.artifact_root = artifact_root
        self.source_root = source_root

    def render(self, report: Report) -> str:
        title = f"gate {STATUS_LABELS[report.verdict]}: {report.policy.name}"
        ordered = triage(report.checks)
        passed = [(index, check) for index, check in ordered if check.status == "pass"]
        body = [
            *self._header(report),
            *self._check_table(report, ordered),
            *self._waiver_notes(report),
            *(self._check_section(index, check) for index, check in ordered if check.status != "pass"),
            *self._passed_sections(passed),
            *self._environment(report),
        ]
        return (
            "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
            f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_text(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body)
            + "\n</body>\n</html>\n"
        )

    def _header(self, report: Report) -> list[str]:
        message = f"<small>{_text(report.message)}</small>" if report.message else ""
        model = f"model <code>{_text(report.model.source)}</code>"
        if report.model.sha256:
            model += f" (sha256 <code>{_text(report.model.sha256[:12])}</code>)"
        data = f"data <code>{_text(report.data.source)}</code>, {report.data.n} samples"
        if report.data.shard:
            data += f", shard {_text(report.data.shard)}"
        facts = [
            model,
            data,
            f"device {_text(report.environment.device)}",
            f"seed {report.seed}",
            f"started {_text(report.started_at.isoformat(timespec='seconds'))}",
            f"{report.duration_s:.1f} s",
        ]
        summary = report.summary
        counts = {
            "pass": summary.passed,
            "fail": summary.failed,
            "warn": summary.warned,
            "waived": summary.waived,
            "error": summary.errored,
        }
        total = sum(counts.values()) or 1
        segments = "".join(
            f'<span class="{status}" style="flex: {count} 1 0" title="{count} {status}">'
            f"{count} {_text(STATUS_LABELS[status])}</span>"
            for status, count in sorted(counts.items(), key=lambda item: TRIAGE_ORDER[item[0]])
            if count
        )
        return [
            f"<h1>gate · policy {_text(report.policy.name)}</h1>",
            f'<div class="verdict {_text(report.verdict)}" id="verdict">'
            f"{_text(STATUS_LABELS[report.verdict])}{message}</div>",
            f'<div class="bar" id="summary-bar" aria-label="{total} checks by status">{segments}</div>',
            '<div class="counts">'
            + "".join(f"<span>{_status(status)} {count}</span>" for status, count in counts.items())
            + "</div>",
            '<div class="meta">' + "".join(f"<span>{fact}</span>" for fact in facts) + "</div>",
        ]

    def _check_table(self, report: Report, ordered: list[tuple[int, CheckResult]]) -> list[str]:
        confidence = (
            "point values (no confidence level)"
            if report.confidence is None
            else f"{_number(report.confidence * 100, 3)}% confidence bounds"
        )
        rows = [
            "<h2>Checks</h2>",
            f"<p class=note>Thresholds are judged on {confidence}.</p>",
            "<div class=scroll><table id=checks><tr><th>Check</th><th>Kind</th><th>Status</th><th>Severity</th>"
            "<th>Metric</th><th>Value</th><th>Interval</th><th>Threshold</th><th>n</th></tr>",
        ]
        for index, check in ordered:
            rows.append(
                f'<tr><td><a href="#{_anchor(index)}">{_text(check.id)}</a></td><td>{_text(check.kind)}</td>'
                f"<td>{_status(check.status)}</td><td>{_text(check.severity)}</td><td>{_text(check.metric)}</td>"
                f"<td class=num>{_number(check.value)}</td><td class=num>{_interval(check)}</td>"
                f"<td>{_threshold(check)}</td><td class=num>{check.n}</td></tr>"
            )
        rows.append("</table></div>")
        return rows

    def _passed_sections(self, passed: list[tuple[int, CheckResult]]) -> list[str]:
        """Passing checks last and collapsed: their evidence is there, but not in a reviewer's way."""
        if not passed:
            return []
        sections = "\n".join(self._check_section(index, check) for index, check in passed)
        return [
            f'<details class="passed" id="passed"><summary>{len(passed)} passing checks</summary>',
            sections,
            "</details>",
        ]

    def _waiver_notes(self, report: Report) -> list[str]:
        notes = []
        for label, names in (
            ("Expired waivers", report.expired_waivers),
            ("Stale waivers", report.stale_waivers),
        ):
            if names:
                notes.append(
                    f"<p><b>{label}:</b> " + ", ".join(f"<code>{_text(n)}</code>" for n in names) + "</p>"
                )
        return notes

    def _check_section(self, index: int, check: CheckResult) -> str:
        parts = [
            f'<section class="check" id="{_anchor(index)}">',
            f"<h2>{_status(check.status)} {_text(check.id)} <small>({_text(check.kind)})</small></h2>",
        ]
        if check.description:
            parts.append(f"<p>{_text(check.description)}</p>")
        parts.append(f'<p class="message {_text(check.status)}">{_text(check.message)}</p>')
        parts.append(_scroll(self._facts(check)))
        if check.findings:
            parts.append("<h3>Findings</h3>" + _scroll(_findings_table(check.findings)))
        if check.details:
            parts.append("<h3>Details</h3>" + _scroll(render_value(check.details)))
        if check.artifacts:
            parts.append("<h3>Evidence</h3>" + self._artifacts(check.artifacts))
        parts.append("</section>")
        return "\n".join(parts)

    def _facts(self, check: CheckResult) -> str:
        facts: dict[str, str] = {
            "Value": f"{_text(check.metric)} = {_number(check.value)}"
            + (f" ({check.successes}/{check.n})" if check.successes is not None else f" (n = {check.n})"),
            "Interval": _interval(check),
            "Threshold": _threshold(check),
            "Severity": _text(check.severity),
        }
        if check.samples_to_decide is not None:
            facts["Undecided"] = f"about {check.samples_to_decide} samples would decide it"
        if check.waiver is not None:
            waiver = check.waiver
            facts["Waiver"] = (
                f"{_text(waiver.state)} until {_text(waiver.expires.isoformat())}, approved by "
                f"{_text(waiver.approved_by)}: {_text(waiver.reason)}"
            )
        if check.regression is not None:
            regression = check.regression
            facts["Regression"] = (
                f"baseline {_number(regression.baseline_value)}, difference {_number(regression.difference)}, "
                f"drop lower bound {_number(regression.drop_lower_bound)}, max drop "
                f"{_number(regression.max_drop)}: {'regressed' if regression.regressed else 'within budget'}"
            )
        if check.location is not None:
            location = check.location
            path = policy_location(location.path, self.source_root)
            where = ":".join(str(part) for part in (path, location.line, location.column) if part)
            facts["Policy"] = f"<code>{_text(where)}</code>"
        facts["Duration"] = f"{check.duration_s:.2f} s"
        rows = "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in facts.items())
        return f"<table class=facts>{rows}</table>"

    def _artifacts(self, artifacts: Iterable[str]) -> str:
        figures, notes = [], []
        for name in artifacts:
            embedded = self._embed(name)
            if embedded.startswith("data:"):
                figures.append(
                    f'<figure><img src="{embedded}" alt="{_text(name)}">'
                    f"<figcaption>{_text(name)}</figcaption></figure>"
                )
            else:
                notes.append(f"<li><code>{_text(name)}</code>: {_text(embedded)}</li>")
        html = ""
        if figures:
            html += '<div class="figures">' + "".join(figures) + "</div>"
        if notes:
            html += '<ul class="note">' + "".join(notes) + "</ul>"
        return html

    def _embed(self, name: str) -> str:
        """A data: URI for an image artifact, or a short reason why it is not shown."""
        if self.artifact_root is None:
            return "not embedded (no report folder given)"
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts:
            return "skipped: artifact paths must stay inside the report folder"
        media_type = IMAGE_TYPES.get(relative.suffix.lower())
        if media_type is None:
            return "not an image; see the report folder"
        path = self.artifact_root / relative
        try:
            size = path.stat().st_size
            if size > MAX_IMAGE_BYTES:
                return f"skipped: {size} bytes is over the {MAX_IMAGE_BYTES}-byte limit for embedded images"
            data = path.read_bytes()
        except FileNotFoundError:
            return "skipped: the file is missing from the report folder"
        except OSError as exc:
            return f"skipped: could not be read ({exc.strerror or type(exc).__name__})"
        return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"

    def _environment(self, report: Report) -> list[str]:
        environment = report.environment.model_dump(mode="json")
        policy = {"name": report.policy.name, "files": report.policy.files, "sha256": report.policy.sha256}
        model = report.model.model_dump(mode="json", exclude_none=True)
        data = report.data.model_dump(mode="json", exclude_none=True)
        policy["files"] = [policy_location(path, self.source_root) for path in report.policy.files]
        return [
            "<section class=check><h2>Run</h2>",
            "<div class=scroll>",
            render_value({"policy": policy, "model": model, "data": data, "environment": environment}),
            "</div>",
            _timings_table(report.timings) if report.timings else "",
            f"<p class=note>Report schema version {report.schema_version}.</p>",
            "</section>",
        ]


def triage(checks: list[CheckResult]) -> list[tuple[int, CheckResult]]:
    """The checks with their report positions, in triage order (errors, failures, warnings, waived,
    passes), keeping the policy's order within each status."""
    return sorted(enumerate(checks), key=lambda item: (TRIAGE_ORDER.get(item[1].status, 0), item[0]))


def policy_location(path: str, source_root: Path | None) -> str:
    """A policy file as a reader knows it: ``builtin:NAME`` for gate's own, else relative to the
    repository (``source_root``, default the working directory) when it lies inside it, never an install
    path."""
    from gate.policy.loader import builtin_policy_dir

    candidate = Path(path)
    if not candidate.is_absolute():
        return candidate.as_posix()
    if candidate.parent == builtin_policy_dir():  # before resolving: the built-in files may be links
        return f"builtin:{candidate.stem}"
    resolved = candidate.resolve()
    try:
        return resolved.relative_to((source_root or Path.cwd()).resolve()).as_posix()
    except ValueError:
        return candidate.as_posix()


def _timings_table(timings: dict[str, float]) -> str:
    """Where the run's time went, with units (``batch_size`` is a count, everything else seconds)."""
    rows = []
    for name, value in timings.items():
        shown = f"{int(value)} samples" if name == "batch_size" else f"{value:.2f} s"
        label = (
            f"check {name.removeprefix('check:')}" if name.startswith("check:") else name.replace("_", " ")
        )
        rows.append(f"<tr><th>{_text(label)}</th><td class=num>{_text(shown)}</td></tr>")
    return "<h3>Timings</h3>" + _scroll("<table id=timings>" + "".join(rows) + "</table>")


def _findings_table(findings: list[Finding]) -> str:
    rows = "".join(
        f"<tr><td><code>{_text(finding.code)}</code></td><td>{_text(finding.message)}</td>"
        f"<td>{render_value(finding.data, 1) if finding.data else '–'}</td></tr>"
        for finding in findings
    )
    return f"<table><tr><th>Code</th><th>Message</th><th>Numbers</th></tr>{rows}</table>"
