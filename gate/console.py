"""User-facing output in one place: messages, the summary table and progress on long work.

Progress is a live bar on an interactive terminal and a few plain lines in CI logs (``CI`` set or no TTY),
so logs stay readable.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import click


def is_interactive(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    return stream.isatty() and not os.environ.get("CI")


class Progress:
    """Counts work units for the current task.

    On an interactive terminal it draws a live bar; in CI logs (``lines``) it prints one line per task
    with its duration; ``quiet`` prints nothing (the library default).
    """

    def __init__(self, *, enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        interactive = is_interactive(self.stream)
        self.mode = "quiet" if enabled is False else ("bar" if interactive or enabled else "lines")
        self.enabled = self.mode == "bar"
        self._label = ""
        self._total = 0
        self._done = 0
        self._last_draw = 0.0

    @contextmanager
    def task(self, label: str, total: int) -> Iterator[Progress]:
        self._label, self._total, self._done = label, max(total, 1), 0
        started = time.monotonic()
        try:
            yield self
        finally:
            if self.mode == "bar":
                self._draw(force=True)
                self.stream.write("\n")
            elif self.mode == "lines":
                self.stream.write(f"  {label}: {self._done}/{total} in {time.monotonic() - started:.1f} s\n")
            self.stream.flush()

    def advance(self, amount: int = 1) -> None:
        self._done = min(self._total, self._done + amount)
        if self.enabled:
            self._draw()

    def _draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        width = 30
        filled = int(width * self._done / self._total)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r  {self._label:<32.32} [{bar}] {self._done}/{self._total}")
        self.stream.flush()


STATUS_STYLE = {
    "pass": ("PASS", "green"),
    "fail": ("FAIL", "red"),
    "warn": ("WARN", "yellow"),
    "waived": ("WAIVED", "cyan"),
    "error": ("ERROR", "magenta"),
}


_colour_off = False


def disable_colour() -> None:
    """``--no-color``: plain text everywhere, whatever the terminal."""
    global _colour_off
    _colour_off = True


def colour_wanted() -> bool:
    """Colour unless ``--no-color`` was given or ``NO_COLOR`` is set to anything (no-color.org); click
    drops the codes by itself when the output is not a terminal."""
    return not _colour_off and not os.environ.get("NO_COLOR")


def _style(text: str, **style: object) -> str:
    return click.style(text, **style) if colour_wanted() else text  # type: ignore[arg-type]


def status_label(status: str) -> str:
    text, colour = STATUS_STYLE[status]
    return _style(f"{text:<6}", fg=colour, bold=True)


def info(message: str) -> None:
    click.echo(message, err=True)


def error(message: str) -> None:
    click.echo(_style("error: ", fg="red", bold=True) + message, err=True)


def warn(message: str) -> None:
    click.echo(_style("warning: ", fg="yellow", bold=True) + message, err=True)


COUNT_METRICS = frozenset({"findings"})
"""Metrics that count things: printed as integers, not as 0.0000."""


def value_text(metric: str, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if metric in COUNT_METRICS else f"{value:.4f}"


def _bounds(check: object) -> str:
    interval = getattr(check, "interval", None)
    if interval is None:
        return ""
    return f"[{interval.lower:.4f}, {interval.upper:.4f}]"


def _threshold(check: object) -> str:
    threshold = getattr(check, "threshold", None)
    parts = []
    if threshold is not None and threshold.min is not None:
        parts.append(f">= {threshold.min:g}")
    if threshold is not None and threshold.max is not None:
        parts.append(f"<= {threshold.max:g}")
    if threshold is not None and threshold.max_drop is not None:
        parts.append(f"drop <= {threshold.max_drop:g}")
    return ", ".join(parts)


def summary_table(report: object, report_dir: object, width: int | None = None) -> str:
    """The table ``gate check`` prints: a header, one line per check with its value, interval and
    threshold, the reason under each check that did not pass (wrapped at word boundaries), the verdict."""
    import shutil
    import textwrap

    width = width or max(60, min(shutil.get_terminal_size((100, 24)).columns, 140))
    environment = report.environment  # type: ignore[attr-defined]
    lines = [
        f"gate · policy {report.policy.name} · {report.data.n} samples · {environment.device}",  # type: ignore[attr-defined]
        f"  {'STATUS':<6} {'CHECK':<28} {'METRIC':<22} {'VALUE':>8}  {'INTERVAL':<18}  THRESHOLD",
    ]
    for check in report.checks:  # type: ignore[attr-defined]
        value = value_text(check.metric, check.value)
        lines.append(
            f"  {status_label(check.status)} {check.id:<28} {check.metric:<22} {value:>8}  "
            f"{_bounds(check):<18}  {_threshold(check)}".rstrip()
        )
        if check.status != "pass":
            lines += textwrap.wrap(
                check.message, width=width, initial_indent=" " * 9, subsequent_indent=" " * 9
            )
    lines.append(f"verdict: {status_label(report.verdict)} {report.message}")  # type: ignore[attr-defined]
    lines.append(f"reports: {report_dir}/")
    return "\n".join(lines)


def out(message: str = "") -> None:
    click.echo(message)
