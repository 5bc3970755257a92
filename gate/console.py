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


def status_label(status: str) -> str:
    text, colour = STATUS_STYLE[status]
    return click.style(f"{text:<6}", fg=colour, bold=True)


def info(message: str) -> None:
    click.echo(message, err=True)


def error(message: str) -> None:
    click.echo(click.style("error: ", fg="red", bold=True) + message, err=True)


def out(message: str = "") -> None:
    click.echo(message)
