"""Resumable runs: finished checks and attacked batches are recorded as they complete.

The state file (``resume-state.jsonl`` in the report folder) holds one JSON line per finished check or
batch, each under a run key that digests the model, policy, data, seed, sample selection and gate version,
so a changed artifact never reuses stale results. Lines are appended and synced one at a time; a line
torn by a cancelled job is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from gate import __version__

STATE_FILE = "resume-state.jsonl"


def run_key(*, model_sha256: str, policy_sha256: str, data_sha256: str, seed: int, samples: int | None,
            shard: tuple[int, int] | None, batch_size: int) -> str:  # fmt: skip
    """Everything that decides a run's per-sample results; any change starts from zero."""
    parts = [
        model_sha256,
        policy_sha256,
        data_sha256,
        str(seed),
        str(samples),
        str(shard),
        str(batch_size),
        __version__,
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class ResumeState:
    """Reads what an interrupted run with the same key finished, and records what this run finishes."""

    def __init__(self, path: Path, key: str, *, resume: bool) -> None:
        self.path = path
        self.key = key
        self.checks: dict[str, dict[str, Any]] = {}
        self.batches: dict[tuple[str, str], dict[str, Any]] = {}
        if resume:
            self._load()
        else:
            path.unlink(missing_ok=True)

    def _load(self) -> None:
        if not self.path.exists():
            return
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by the interruption
            if not isinstance(entry, dict) or entry.get("run") != self.key:
                continue
            if entry.get("batch") is None:
                self.checks[entry["check"]] = entry["payload"]
            else:
                self.batches[(entry["check"], entry["batch"])] = entry["payload"]

    @property
    def resumed(self) -> int:
        return len(self.checks) + len(self.batches)

    def finished_check(self, check: str) -> dict[str, Any] | None:
        return self.checks.get(check)

    def finished_batch(self, check: str, batch: str) -> dict[str, Any] | None:
        return self.batches.get((check, batch))

    def record_check(self, check: str, payload: dict[str, Any]) -> None:
        self._append({"run": self.key, "check": check, "batch": None, "payload": payload})

    def record_batch(self, check: str, batch: str, payload: dict[str, Any]) -> None:
        self._append({"run": self.key, "check": check, "batch": batch, "payload": payload})

    def _append(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(entry) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
