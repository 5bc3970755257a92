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
from typing import Any, TextIO

import click


def is_interactive(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    return stream.isatty() and not os.environ.get("CI")


class Progress:
    """Says what the run is doing while it does it.

    ``step`` announces a stage ("check 7 of 13: pgd-linf (adversarial)"); ``task`` counts the work units
    (samples, batches) of one piece of work, and ``pulse`` the model calls inside one (an attack's steps).
    On an interactive terminal a task is a live ``rich`` progress bar with the elapsed time and an ETA; in
    CI logs and pipes (``lines``) every event is one plain line, never a carriage return; ``quiet``
    prints nothing (the library default).
    """

    def __init__(self, *, enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        interactive = is_interactive(self.stream)
        self.mode = "quiet" if enabled is False else ("bar" if interactive or enabled else "lines")
        self.enabled = self.mode == "bar"
        self._label = ""
        self._total = 0
        self._done = 0
        self._started = 0.0
        self._calls = 0
        self._bar: Any = None
        self._bar_task: Any = None

    def step(self, index: int, total: int, what: str) -> None:
        """Announce stage ``index`` of ``total`` (1-based), e.g. the checks of a policy."""
        if self.mode != "quiet":
            self.stream.write(f"check {index} of {total}: {what}\n")
            self.stream.flush()

    @contextmanager
    def task(self, label: str, total: int) -> Iterator[Progress]:
        self._label, self._total, self._done, self._calls = label, max(total, 1), 0, 0
        self._started = time.monotonic()
        if self.mode == "lines" and total == 1:  # one unit (loading, exporting) shows no progress: say it
            self.stream.write(f"  {label} …\n")
            self.stream.flush()
        if self.mode == "bar":
            self._start_bar(label)
        try:
            yield self
        finally:
            elapsed = _duration(time.monotonic() - self._started)
            if self._bar is not None:
                self._bar.update(self._bar_task, completed=self._done)
                self._bar.stop()
                self._bar = self._bar_task = None
            elif self.mode == "lines":
                self.stream.write(f"  {label}: {self._done}/{total} in {elapsed}\n")
            self.stream.flush()

    def advance(self, amount: int = 1) -> None:
        self._done = min(self._total, self._done + amount)
        if self._bar is not None:
            left = self.eta()
            eta = "" if left is None else f"ETA {_duration(left)}"
            self._bar.update(self._bar_task, completed=self._done, eta=eta, refresh=True)

    def pulse(self) -> None:
        """One model call inside the current unit (an attack step): the bar moves within a long batch."""
        self._calls += 1
        if self._bar is not None:
            self._bar.update(self._bar_task, calls=f"{self._calls} model calls")

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the pace so far; None before the first unit is done."""
        elapsed = (time.monotonic() if now is None else now) - self._started
        if self._done == 0 or elapsed <= 0:
            return None
        return elapsed * (self._total - self._done) / self._done

    def _start_bar(self, label: str) -> None:
        """A rich bar: the label, the bar, done/total, elapsed, ETA (this run's pace) and model calls."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        console = Console(
            file=self.stream, force_terminal=True, no_color=not colour_wanted(), highlight=False
        )
        self._bar = RichProgress(
            TextColumn("  {task.description:<32.32}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            TextColumn("{task.fields[calls]}"),
            console=console,
            get_time=lambda: time.monotonic(),  # read at call time: tests set the clock
            refresh_per_second=10,
        )
        self._bar_task = self._bar.add_task(label, total=self._total, eta="", calls="")
        self._bar.start()


def _duration(seconds: float) -> str:
    """``4.2 s`` under a minute, else ``12:05`` (minutes:seconds) or ``1:02:05``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


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
