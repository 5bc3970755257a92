"""The typed error hierarchy: every user mistake becomes one of these, caught once at the CLI boundary."""

from __future__ import annotations

from pathlib import Path

EXIT_PASS, EXIT_FAIL, EXIT_INVALID, EXIT_ERROR = 0, 1, 2, 3
"""The exit codes: pass, fail, invalid input (a user mistake), error (the gate could not decide)."""


class GateError(Exception):
    """Base class of every error gate raises on purpose; the CLI turns it into a message and an exit code."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, hint: str | None = None) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.path}: " if self.path else ""
        hint = f"\n  hint: {self.hint}" if self.hint else ""
        return f"{where}{self.message}{hint}"


class PolicyError(GateError):
    """A policy file is missing, unreadable or does not follow the policy format."""


class ModelError(GateError):
    """A model file or factory could not be loaded, exported or run as expected."""


class DataError(GateError):
    """An evaluation data set is missing, malformed or inconsistent with the model or policy."""


class CheckError(GateError):
    """A check could not be completed; the run's verdict becomes ``error`` (exit 3)."""

    exit_code = 3


class RunTimeout(GateError):
    """The run's ``--timeout`` passed before any check could run (while loading policy, data or model)."""

    exit_code = 3


class UsageError(GateError):
    """The command line is inconsistent (e.g. a shard spec out of range)."""
