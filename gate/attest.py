"""Attestations of a gate run: an in-toto Statement built from report.json, and its verification.

``build_statement`` turns a report (and the digests of the files it names) into an in-toto Statement v1
whose subject is the model artifact and whose predicate is the verdict with its evidence, ready to be
signed in CI (e.g. by ``actions/attest`` or ``cosign attest``). ``verify_statement`` compares such a
statement with digests recomputed from the artifacts at hand. Both are pure: the ``*_digest`` helpers
read files, and the CLI (``gate attest``, ``gate verify``) does the writing and the printing.

Two digests are kept for the model. The subject carries the plain SHA-256 of each file (what
``sha256sum``, ``actions/attest`` ``subject-path`` and ``gh attestation verify`` compute); the predicate
carries gate's own model digest from the report (``gate.model.files.sha256_of_files``): for a single file
the same plain SHA-256, for an ONNX file with external data one SHA-256 over the files, each prefixed by
its name, so a swapped external-data file is caught even though it is not the file being verified.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate.errors import GateError
from gate.report.model import Report

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://gate.dev/attestation/verdict/v1"
_CHUNK = 1 << 20


class AttestationError(GateError):
    """A statement is unreadable or not a gate verdict attestation (exit 2)."""


@dataclass(frozen=True)
class Subject:
    """One attested artifact: a file name and its plain SHA-256."""

    name: str
    sha256: str
    role: str  # "model", "model-source" or "external-data"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "digest": {"sha256": self.sha256}, "annotations": {"gate.role": self.role}}


@dataclass(frozen=True)
class ModelDigests:
    """What a model file hashes to: its plain SHA-256 and, for ONNX, gate's digest with external data."""

    path: Path
    sha256: str
    gate_sha256: str | None = None
    external: tuple[Subject, ...] = ()


@dataclass
class Verification:
    """The outcome of ``verify_statement``: what matched, what did not, and whether the verdict is pass."""

    matched: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    verdict: str = ""

    @property
    def ok(self) -> bool:
        return not self.mismatched and self.verdict == "pass"


# --------------------------------------------------------------------- digests (these read files)
def file_sha256(path: Path) -> str:
    """The plain SHA-256 of one file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def model_digests(path: Path) -> ModelDigests:
    """Digests of a model file; for ``.onnx`` also gate's digest, computed as ``gate check`` computes it.

    Raises:
        ModelError: the file is missing, too large, or an ONNX file that cannot be read safely
            (external data outside its folder is refused before anything is hashed).
    """
    from gate.model.files import checked_file
    from gate.model.onnx_file import read_onnx

    checked_file(path, "model file")
    if path.suffix.lower() != ".onnx":
        return ModelDigests(path, file_sha256(path))
    _, onnx_file = read_onnx(path, with_data=False)
    external = tuple(
        Subject(extra.name, file_sha256(extra), "external-data") for extra in onnx_file.external_files
    )
    return ModelDigests(path, file_sha256(path), onnx_file.sha256, external)


def policy_digest(reference: str) -> str:
    """gate's policy digest: over the file and everything it extends, as in report.json."""
    from gate.policy import load_policy

    return load_policy(reference).sha256


def data_digest(source: str) -> str:
    """gate's data digest of an ``.npz`` file (its SHA-256) or an image folder (paths and bytes)."""
    from gate.data.folder import open_folder
    from gate.errors import DataError

    path = Path(source)
    if path.is_file():
        return file_sha256(path)
    if path.is_dir():
        return open_folder(path, input_shape=None, input_range=(0.0, 1.0)).sha256
    raise DataError(
        "expected an .npz file or an image folder to hash; an entry point's arrays are digested only "
        "by gate check",
        path=source,
    )


def report_subjects(report: Report, report_dir: Path) -> list[Subject]:
    """The files a report's model consists of, hashed now: the ONNX artifact, its external data, the source.

    Raises:
        AttestationError: the model file the report names is no longer there.
    """
    onnx_path = _existing(report.model.onnx_path, report_dir)
    digests = model_digests(onnx_path)
    subjects = [Subject(onnx_path.name, digests.sha256, "model"), *digests.external]
    if digests.gate_sha256 is not None and digests.gate_sha256 != report.model.sha256:
        raise AttestationError(
            f"the model file {onnx_path} hashes to {digests.gate_sha256}, but the report was made for "
            f"{report.model.sha256}; it changed since gate check ran",
            path=report_dir / "report.json",
        )
    source = Path(report.model.source)
    if source.is_file() and source.resolve() != onnx_path.resolve():
        subjects.append(Subject(source.name, file_sha256(source), "model-source"))
    return subjects


def _existing(recorded: str | None, report_dir: Path) -> Path:
    if not recorded:
        raise AttestationError("the report names no model file", path=report_dir / "report.json")
    path = Path(recorded)
    for candidate in (path, report_dir / "model" / path.name):
        if candidate.is_file():
            return candidate
    raise AttestationError(
        f"the report's model file {recorded!r} is not there (looked relative to the current folder and in "
        f"{report_dir / 'model'}); run gate attest where gate check ran",
        path=report_dir / "report.json",
    )


# --------------------------------------------------------------------- the statement (pure)
def build_predicate(report: Report, *, report_sha256: str, attested_at: dt.datetime) -> dict[str, Any]:
    """The verdict and its evidence, in the predicate of ``PREDICATE_TYPE``."""
    env = report.environment
    return {
        "verdict": report.verdict,
        "exitCode": report.exit_code,
        "message": report.message,
        "checks": [_check_entry(check) for check in report.checks],
        "model": {
            "source": report.model.source,
            "sourceKind": report.model.source_kind,
            "onnxPath": report.model.onnx_path,
            "sha256": report.model.sha256,
        },
        "policy": {"name": report.policy.name, "sha256": report.policy.sha256, "files": report.policy.files},
        "data": {
            "source": report.data.source,
            "sha256": report.data.sha256,
            "n": report.data.n,
            "shard": report.data.shard,
        },
        "seed": report.seed,
        "confidence": report.confidence,
        "environment": {
            "gate": env.gate,
            "torch": env.torch,
            "onnx": env.onnx,
            "onnxruntime": env.onnxruntime,
            "python": env.python,
            "platform": env.platform,
            "device": env.device,
        },
        "report": {"name": "report.json", "sha256": report_sha256, "schemaVersion": report.schema_version},
        "timestamp": report.started_at.isoformat(),
        "attestedAt": attested_at.isoformat(),
    }


def _check_entry(check: Any) -> dict[str, Any]:
    interval = check.interval
    return {
        "id": check.id,
        "kind": check.kind,
        "status": check.status,
        "severity": check.severity,
        "metric": check.metric,
        "value": check.value,
        "interval": None
        if interval is None
        else {"lower": interval.lower, "upper": interval.upper, "confidence": interval.confidence},
        "n": check.n,
        "threshold": check.threshold.model_dump(exclude_none=True),
        "findings": [finding.code for finding in check.findings],
    }


def build_statement(subjects: list[Subject], predicate: dict[str, Any]) -> dict[str, Any]:
    """An in-toto Statement v1 about ``subjects`` with gate's verdict predicate."""
    if not subjects:
        raise AttestationError("an attestation needs at least one subject (the model file)")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [subject.to_json() for subject in subjects],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def parse_statement(document: Any, *, where: str | Path) -> dict[str, Any]:
    """Check that ``document`` is a gate verdict statement with what verification needs; return it.

    Accepts a bare statement, a DSSE envelope whose payload is one (what signing tools write), or a
    Sigstore bundle holding such an envelope.
    """
    document = _unwrap_envelope(document, where)
    if not isinstance(document, dict):
        raise AttestationError(f"expected a JSON object, found {type(document).__name__}", path=where)
    if document.get("_type") != STATEMENT_TYPE:
        raise AttestationError(
            f"expected _type {STATEMENT_TYPE!r}, found {document.get('_type')!r}", path=where
        )
    if document.get("predicateType") != PREDICATE_TYPE:
        raise AttestationError(
            f"expected predicateType {PREDICATE_TYPE!r}, found {document.get('predicateType')!r}", path=where
        )
    subjects = document.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise AttestationError("expected a non-empty subject list", path=where)
    for index, subject in enumerate(subjects):
        digest = subject.get("digest") if isinstance(subject, dict) else None
        if not isinstance(digest, dict) or not isinstance(digest.get("sha256"), str):
            raise AttestationError(f"subject[{index}] has no digest.sha256", path=where)
    predicate = document.get("predicate")
    if not isinstance(predicate, dict) or not isinstance(predicate.get("verdict"), str):
        raise AttestationError("expected a predicate with a verdict", path=where)
    for section in ("model", "policy", "data"):
        if not isinstance(predicate.get(section), dict):
            raise AttestationError(f"expected predicate.{section} to be an object", path=where)
    return document


def _unwrap_envelope(document: Any, where: str | Path) -> Any:
    """A DSSE envelope's payload, also inside a Sigstore bundle (``gh attestation download`` writes those)."""
    if isinstance(document, dict) and isinstance(document.get("dsseEnvelope"), dict):
        document = document["dsseEnvelope"]
    if not (isinstance(document, dict) and "payload" in document and "payloadType" in document):
        return document
    import base64
    import binascii
    import json

    try:
        return json.loads(base64.b64decode(document["payload"], validate=True))
    except (binascii.Error, ValueError, TypeError) as error:
        raise AttestationError(
            f"the DSSE envelope's payload is not base64 JSON ({error})", path=where
        ) from None


# --------------------------------------------------------------------- verification (pure)
def verify_statement(
    statement: dict[str, Any],
    *,
    model: ModelDigests,
    policy_sha256: str | None = None,
    data_sha256: str | None = None,
) -> Verification:
    """Compare recomputed digests with a parsed statement; say which match and which do not."""
    result = Verification(verdict=str(statement["predicate"]["verdict"]))
    predicate = statement["predicate"]
    by_digest = {s["digest"]["sha256"]: s.get("name", "?") for s in statement["subject"]}
    name = model.path.name
    if model.sha256 in by_digest:
        result.matched.append(f"model {name}: sha256 {model.sha256} is subject {by_digest[model.sha256]!r}")
    else:
        result.mismatched.append(
            f"model {name}: sha256 {model.sha256} matches no subject of the statement "
            f"({', '.join(f'{n} {d[:12]}…' for d, n in by_digest.items())})"
        )
    if model.gate_sha256 is not None and model.sha256 in by_digest:
        _compare(
            result,
            f"model {name} as gate digests it"
            + (" (with its external data, by file name)" if model.external else ""),
            model.gate_sha256,
            predicate["model"].get("sha256"),
        )
    for extra in model.external:
        if extra.sha256 not in by_digest:
            result.mismatched.append(f"external data {extra.name}: sha256 {extra.sha256} matches no subject")
    if policy_sha256 is not None:
        _compare(result, "policy", policy_sha256, predicate["policy"].get("sha256"))
    if data_sha256 is not None:
        _compare(result, "data", data_sha256, predicate["data"].get("sha256"))
    return result


def _compare(result: Verification, what: str, actual: str, attested: Any) -> None:
    if actual == attested:
        result.matched.append(f"{what}: sha256 {actual}")
    else:
        result.mismatched.append(f"{what}: sha256 {actual}, but the statement attests {attested}")


__all__ = [
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "AttestationError",
    "ModelDigests",
    "Subject",
    "Verification",
    "build_predicate",
    "build_statement",
    "data_digest",
    "file_sha256",
    "model_digests",
    "parse_statement",
    "policy_digest",
    "report_subjects",
    "verify_statement",
]
