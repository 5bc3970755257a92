"""A run's identity and its resume state: what decides its results, and what it finished before an interruption.

``RunFingerprint`` lists everything that changes a run's results: the model, policy and data digests,
the seed, the number of samples, the model options (``--mean/--std``, input shape, exporter, opset …),
the shard, the batch size, the device and the library versions. Its digest keys the resume state, and
``run.json`` in the report folder records it, so ``gate merge`` can refuse shards that disagree.

The state file (``resume-state.jsonl``) holds one JSON line per finished check or attacked batch. The
report folder is not trusted: a pull request can commit one and a CI cache can restore one. So every line
carries an HMAC-SHA256 under a key derived from the fingerprint's digest and a random secret that never
enters the report folder (kept per report folder under ``$XDG_STATE_HOME/gate/resume``, renewed by each run
started without ``--resume``, or taken from ``GATE_RESUME_KEY``). A line that does not verify is recomputed,
never trusted; a line torn by a cancelled job is ignored. What this does and does not protect against is
in docs/checks.md ("Sharding and resuming").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from gate import __version__

if TYPE_CHECKING:
    import torch

    from gate.data import EvalData
    from gate.model import ModelUnderTest
    from gate.policy import ResolvedPolicy
    from gate.runner import RunOptions

logger = logging.getLogger(__name__)

STATE_FILE = "resume-state.jsonl"
FINGERPRINT_FILE = "run.json"
SECRET_ENV = "GATE_RESUME_KEY"
MAX_STATE_BYTES = 1 << 30
"""A larger state file is not read at all: nothing an honest run writes comes close."""
SECRET_BYTES = 32
SECRET_MAX_AGE_S = 30 * 24 * 3600
"""Secrets of report folders not run for this long are removed, so they do not pile up."""
_MAC_CONTEXT = b"gate resume-state v1\0"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def canonical_json(document: Any) -> bytes:
    """One byte string per JSON value (sorted keys, no spaces), so digests do not depend on formatting."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def document_sha256(document: Any) -> str:
    """The digest of a JSON value, e.g. of the resolved policy a report embeds."""
    return hashlib.sha256(canonical_json(document)).hexdigest()


@dataclass(frozen=True)
class RunFingerprint:
    """Everything that decides a run's results; the fields in ``SHARED`` must agree across shards."""

    gate: str
    model_sha256: str
    policy_sha256: str
    resolved_policy_sha256: str
    data_sha256: str
    seed: int
    samples: int | None
    model_options: dict[str, Any]
    """The model spec without its source path (the model digest stands for it): mean/std, input shape,
    exporter, opset, class names, weights, trust flags and whatever else the spec gains."""
    shard: str | None
    batch_size: int
    device: str
    provider: str | None
    libraries: dict[str, str]
    model_source: str = ""

    SHARED: ClassVar[tuple[str, ...]] = (
        "gate",
        "model_sha256",
        "policy_sha256",
        "resolved_policy_sha256",
        "data_sha256",
        "seed",
        "samples",
        "model_options",
    )

    def key(self) -> str:
        """The digest of every field: any change starts the resume state from zero."""
        return document_sha256(dataclasses.asdict(self))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, document: Any) -> RunFingerprint:
        """Read ``run.json``; raises ``ValueError`` naming what is missing or of the wrong type."""
        if not isinstance(document, dict):
            raise ValueError(f"expected a JSON object, found {type(document).__name__}")
        names = {field.name for field in dataclasses.fields(cls)}
        missing = sorted(names - set(document) - {"model_source"})
        if missing:
            raise ValueError(f"expected the fields {', '.join(missing)}")
        unknown = sorted(set(document) - names)
        if unknown:
            raise ValueError(f"unknown fields {', '.join(unknown)}")
        for name in ("model_options", "libraries"):
            if not isinstance(document[name], dict):
                raise ValueError(f"expected {name} to be an object")
        return cls(**document)


def model_options(spec: Any) -> dict[str, Any]:
    """The model spec as plain JSON, without the source path (a relative and an absolute path are one model)."""
    fields = dataclasses.asdict(spec) if dataclasses.is_dataclass(spec) else dict(vars(spec))
    fields.pop("source", None)
    return json.loads(json.dumps(fields, sort_keys=True, default=str))


def library_versions() -> dict[str, str]:
    """The libraries whose numerics the results depend on."""
    import numpy
    import onnx
    import onnxruntime
    import torch

    return {
        "numpy": numpy.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
    }


def fingerprint_run(
    options: RunOptions,
    resolved: ResolvedPolicy,
    *,
    model: ModelUnderTest,
    data: EvalData,
    seed: int,
    samples: int | None,
    batch_size: int,
    device: torch.device,
) -> RunFingerprint:
    """The fingerprint of a run about to evaluate its checks."""
    shard = options.shard
    return RunFingerprint(
        gate=__version__,
        model_sha256=model.onnx_sha256,
        policy_sha256=resolved.sha256,
        resolved_policy_sha256=document_sha256(resolved.policy.model_dump(mode="json")),
        data_sha256=data.sha256,
        seed=int(seed),
        samples=samples,
        model_options=model_options(options.model),
        shard=f"{shard[0]}/{shard[1]}" if shard else None,
        batch_size=int(batch_size),
        device=str(device),
        provider=model.provider,
        libraries=library_versions(),
        model_source=str(options.model.source),
    )


def write_fingerprint(fingerprint: RunFingerprint, report_dir: Path) -> None:
    """``run.json``: what ``gate merge`` compares across shards (atomic, and never through a link)."""
    from gate.report import write_atomic

    write_atomic(report_dir / FINGERPRINT_FILE, json.dumps(fingerprint.to_json(), indent=2) + "\n")


def judgement_key(run: str, *, today: dt.date, baseline: Path | None) -> str:
    """What a judged check result also depends on: the day (waivers expire) and the ``--baseline`` report."""
    baseline_sha256 = hashlib.sha256(baseline.read_bytes()).hexdigest() if baseline is not None else None
    return document_sha256({"run": run, "today": today.isoformat(), "baseline": baseline_sha256})


def open_resume_state(options: RunOptions, fingerprint: RunFingerprint) -> ResumeState:
    """The run's resume state, keyed by its fingerprint (also written to ``run.json`` for ``gate merge``)."""
    write_fingerprint(fingerprint, options.report_dir)
    key = fingerprint.key()
    judged = judgement_key(key, today=options.today or dt.date.today(), baseline=options.baseline)
    secret = run_secret(options.report_dir, fresh=not options.resume)
    return ResumeState(
        options.report_dir / STATE_FILE, key, judged=judged, secret=secret, resume=options.resume
    )


# --------------------------------------------------------------------- the secret (outside the report folder)
def secret_dir() -> Path:
    """Where per-report-folder secrets are kept: ``$XDG_STATE_HOME/gate/resume`` (``~/.local/state``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gate" / "resume"


def run_secret(report_dir: Path, *, fresh: bool) -> bytes | None:
    """The secret the state's MACs are keyed with; ``None`` (nothing can be resumed) when none can be kept.

    ``GATE_RESUME_KEY`` (a CI secret, so a resumed job on another machine can verify its state) wins;
    otherwise a random secret per report folder, renewed by every run started without ``--resume``.
    """
    configured = os.environ.get(SECRET_ENV)
    if configured:
        return configured.encode()
    try:
        folder = secret_dir()
        path = folder / f"{hashlib.sha256(str(report_dir.resolve()).encode()).hexdigest()[:32]}.key"
        if not fresh and (existing := _read_secret(path)) is not None:
            return existing
        secret = secrets.token_bytes(SECRET_BYTES)
        _write_secret(folder, path, secret)
        return secret
    except (OSError, RuntimeError) as error:  # no home, a read-only one, or a folder someone else owns
        log = logger.warning if not fresh else logger.debug
        log("resume: cannot keep the resume secret outside the report folder (%s); nothing is resumed", error)
        return None


def _read_secret(path: Path) -> bytes | None:
    try:
        descriptor = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    with os.fdopen(descriptor, "rb") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size != SECRET_BYTES or not _owned(info):
            return None
        return stream.read(SECRET_BYTES)


def _write_secret(folder: Path, path: Path, secret: bytes) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or not _owned(info):
        raise OSError(f"{folder} is not a folder of this user")
    if info.st_mode & 0o077:
        os.chmod(folder, 0o700)
    temporary = folder / f".{path.name}.{secrets.token_hex(8)}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(secret)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _prune(folder, keep=path)


def _prune(folder: Path, *, keep: Path) -> None:
    """Drop secrets of report folders not run for ``SECRET_MAX_AGE_S`` (best effort)."""
    cutoff = time.time() - SECRET_MAX_AGE_S
    for old in folder.glob("*.key"):
        try:
            if old != keep and old.lstat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            continue


def _owned(info: os.stat_result) -> bool:
    return not hasattr(os, "getuid") or info.st_uid == os.getuid()


# --------------------------------------------------------------------- the state file
class ResumeState:
    """What an interrupted run with the same fingerprint finished (verified), and what this run finishes.

    Batches are keyed by the run's fingerprint ``key``; judged check results also by ``judged`` (the day
    and the baseline), so a waiver that expired overnight is judged again.
    """

    def __init__(
        self, path: Path, key: str, *, resume: bool, secret: bytes | None, judged: str | None = None
    ) -> None:
        self.path = path
        self.key = key
        self.judged = judged or key
        self._mac_key = (
            None if secret is None else hmac.new(secret, _MAC_CONTEXT + key.encode(), hashlib.sha256).digest()
        )
        self.checks: dict[str, dict[str, Any]] = {}
        self.batches: dict[tuple[str, str], dict[str, Any]] = {}
        self.ignored = 0
        _make_room(path, resume=resume)
        if resume:
            self._load()

    def _load(self) -> None:
        lines = _state_lines(self.path)
        for line in lines:
            entry = self._verified(line)
            if entry is None:
                continue
            if entry["batch"] is None:
                self.checks[entry["check"]] = entry["payload"]
            else:
                self.batches[(entry["check"], entry["batch"])] = entry["payload"]
        if self.ignored:
            logger.warning(
                "resume: ignored %d of %d entries in %s: not written by a run with these settings and this "
                "run's secret (other settings, another machine, or edited); they are recomputed",
                self.ignored,
                len(lines),
                self.path,
            )

    def _verified(self, line: bytes) -> dict[str, Any] | None:
        """The entry on ``line`` if this run's key wrote it; anything else is counted and ignored."""
        try:
            entry = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return None  # a line torn by the interruption
        if (
            self._mac_key is None
            or not isinstance(entry, dict)
            or set(entry) != {"run", "check", "batch", "payload", "mac"}
            or not isinstance(entry["check"], str)
            or not isinstance(entry["batch"], str | None)
            or not isinstance(entry["payload"], dict)
            or not isinstance(entry["mac"], str)
            or entry["run"] != (self.judged if entry["batch"] is None else self.key)
            or not hmac.compare_digest(entry["mac"], _mac(self._mac_key, entry))
        ):
            self.ignored += 1
            return None
        return entry

    @property
    def resumed(self) -> int:
        return len(self.checks) + len(self.batches)

    def finished_check(self, check: str) -> dict[str, Any] | None:
        return self.checks.get(check)

    def finished_batch(self, check: str, batch: str) -> dict[str, Any] | None:
        return self.batches.get((check, batch))

    def record_check(self, check: str, payload: dict[str, Any]) -> None:
        self._append({"run": self.judged, "check": check, "batch": None, "payload": payload})

    def record_batch(self, check: str, batch: str, payload: dict[str, Any]) -> None:
        self._append({"run": self.key, "check": check, "batch": batch, "payload": payload})

    def _append(self, entry: dict[str, Any]) -> None:
        if self._mac_key is None:
            return  # without a secret nothing written could be verified later
        entry["mac"] = _mac(self._mac_key, entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW
        with os.fdopen(os.open(self.path, flags, 0o644), "ab") as stream:
            stream.write(canonical_json(entry) + b"\n")
            stream.flush()
            os.fsync(stream.fileno())


def _mac(key: bytes, entry: dict[str, Any]) -> str:
    """The HMAC of an entry without its ``mac`` field."""
    body = {name: value for name, value in entry.items() if name != "mac"}
    return hmac.new(key, canonical_json(body), hashlib.sha256).hexdigest()


def _make_room(path: Path, *, resume: bool) -> None:
    """No state of an earlier run unless resuming, and never a link, FIFO or folder where the state goes."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif not resume or path.is_symlink() or (path.exists() and not path.is_file()):
        path.unlink(missing_ok=True)  # a link is removed itself, its target is left alone


def _state_lines(path: Path) -> list[bytes]:
    """The state file's lines, read without following a link or blocking on a FIFO."""
    try:
        descriptor = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return []
    with os.fdopen(descriptor, "rb") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            return []
        if info.st_size > MAX_STATE_BYTES:
            logger.warning(
                "resume: %s is %d bytes, more than the %d a run writes; it is ignored", path, info.st_size,
                MAX_STATE_BYTES,
            )  # fmt: skip
            return []
        return stream.read().splitlines()


__all__ = [
    "FINGERPRINT_FILE",
    "STATE_FILE",
    "ResumeState",
    "RunFingerprint",
    "document_sha256",
    "fingerprint_run",
    "judgement_key",
    "open_resume_state",
    "run_secret",
]
