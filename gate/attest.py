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

Nothing read is taken on trust. ``gate attest`` re-derives the verdict, exit code and summary from the
report's checks with ``gate.verdict`` and checks each status against its numbers, thresholds and the
embedded policy before it states anything (``check_report``); ``gate verify`` does the same with the
statement's checks (``check_predicate``), and every subject, the policy and the data must be checked
against a file for a pass.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gate.errors import GateError
from gate.report.model import CheckResult, IntervalModel, Regression, Report, ThresholdModel, WaiverState

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://gate.dev/attestation/verdict/v1"
_CHUNK = 1 << 20
ROLES = ("model", "external-data", "model-source")


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
    unchecked: list[str] = field(default_factory=list)
    """What the statement names but no file was given for: never a pass."""
    verdict: str = ""

    @property
    def ok(self) -> bool:
        return not self.mismatched and not self.unchecked and self.verdict == "pass"


# --------------------------------------------------------------------- digests (these read files)
def file_sha256(path: Path) -> str:
    """The plain SHA-256 of one file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def read_regular(path: Path, *, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; a FIFO or device is refused, never waited on.

    Raises:
        AttestationError: the file is missing, not a regular file, or too large.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise AttestationError(f"{what} not found", path=path) from None
    except OSError as error:
        raise AttestationError(f"{what} cannot be opened: {error.strerror}", path=path) from None
    with os.fdopen(descriptor, "rb") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise AttestationError(
                f"expected the {what} to be a regular file, found {_file_type(info.st_mode)}", path=path
            )
        if info.st_size > limit:
            raise AttestationError(f"the {what} is {info.st_size} bytes; the limit is {limit}", path=path)
        return stream.read(limit + 1)


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a device or other special file"


def model_digests(path: Path, *, onnx: bool | None = None) -> ModelDigests:
    """Digests of a model file; for ONNX also gate's digest, computed as ``gate check`` computes it.

    ``onnx=None`` decides by the suffix; ``gate verify`` passes ``True``, since the attested model is
    always the ONNX artifact (an external-data file given in its place must not hash as a model).

    Raises:
        ModelError: the file is missing, too large, or an ONNX file that cannot be read safely
            (external data outside its folder is refused before anything is hashed).
    """
    from gate.model.files import checked_file
    from gate.model.onnx_file import read_onnx

    checked_file(path, "model file")
    if not (onnx if onnx is not None else path.suffix.lower() == ".onnx"):
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


def _check_entry(check: CheckResult) -> dict[str, Any]:
    interval = check.interval
    waiver = check.waiver
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
        "waiver": None
        if waiver is None
        else {
            "reason": waiver.reason,
            "approvedBy": waiver.approved_by,
            "expires": waiver.expires.isoformat(),
            "state": waiver.state,
        },
        "regression": None if check.regression is None else check.regression.model_dump(mode="json"),
        "findings": [finding.code for finding in check.findings],
    }


# --------------------------------------------------------------------- consistency (pure)
def status_problems(checks: list[CheckResult]) -> list[str]:
    """Where a check's status is not what gate.verdict's rules give for its numbers (empty if none).

    Only statuses that let a run through are questioned: ``pass`` needs its bounds inside the thresholds
    (the interval's when there is one, as ``judge`` compares) and no regression, ``waived`` an active
    waiver, ``warn`` a ``warn`` severity. A ``fail`` or ``error`` never makes a verdict pass.
    """
    problems = []
    for check in checks:
        why = _unjustified(check)
        if why:
            problems.append(f"check {check.id!r} is {check.status} but {why}")
    return problems


def _unjustified(check: CheckResult) -> str | None:
    if check.status == "warn" and check.severity != "warn":
        return "its severity is block (a blocking check that fails is fail)"
    if check.status == "waived" and (check.waiver is None or check.waiver.state != "active"):
        return "it has no active waiver"
    if check.status != "pass":
        return None
    value, threshold = check.value, check.threshold
    if value is None or not math.isfinite(value):
        return f"its value is {value}"
    low, high = (check.interval.lower, check.interval.upper) if check.interval else (value, value)
    bound = "its interval's {} bound" if check.interval else "its value"
    if threshold.min is not None and not low >= threshold.min:
        return f"{bound.format('lower')} {low:.6g} is below min {threshold.min:.6g}"
    if threshold.max is not None and not high <= threshold.max:
        return f"{bound.format('upper')} {high:.6g} is above max {threshold.max:.6g}"
    if check.regression is not None and check.regression.regressed:
        return "it regressed against the baseline by more than max_drop"
    if (
        threshold.max_drop is not None
        and threshold.min is None
        and threshold.max is None
        and check.regression is None
    ):
        return "max_drop is its only threshold and there is no regression to judge"
    return None


def verdict_problems(verdict: str, exit_code: int, checks: list[CheckResult]) -> list[str]:
    """Where a stored verdict or exit code is not what ``gate.verdict.overall_verdict`` gives the checks."""
    from gate.verdict import overall_verdict

    derived, derived_code = overall_verdict(checks)
    problems = []
    if verdict != derived:
        problems.append(f"the verdict is {verdict}, but the checks give {derived}")
    if exit_code != derived_code:
        problems.append(f"the exit code is {exit_code}, but the checks give {derived_code}")
    return problems + status_problems(checks)


def check_report(report: Report, *, where: Path) -> None:
    """Refuse to attest a report whose verdict, exit code, summary or statuses contradict its checks and
    the policy it embeds.

    Raises:
        AttestationError: with every contradiction found.
    """
    from gate.report.assemble import summarise

    problems = verdict_problems(report.verdict, report.exit_code, report.checks)
    summary = summarise(report.checks)
    if report.summary != summary:
        problems.append(
            f"the summary says {report.summary.model_dump()}, but the checks give {summary.model_dump()}"
        )
    problems += _policy_problems(report)
    if problems:
        raise AttestationError(
            "refusing to attest: report.json contradicts itself (was it edited?): " + "; ".join(problems),
            path=where,
        )


def _policy_problems(report: Report) -> list[str]:
    """Each check's kind, severity, thresholds and waiver must be the embedded policy's."""
    from gate.policy.model import Policy

    if report.resolved_policy is None:
        return ["it embeds no policy to check the thresholds against"]
    try:
        policy = Policy.model_validate(report.resolved_policy)
    except ValidationError as error:
        return [f"its embedded policy is not valid ({str(error).splitlines()[0]})"]
    specs = {spec.id: spec for spec in policy.checks}
    ids = [check.id for check in report.checks]
    problems = []
    if sorted(ids) != sorted(specs):
        problems.append(f"its checks {sorted(ids)} are not the policy's {sorted(specs)}")
    for check in report.checks:
        spec = specs.get(check.id)
        if spec is None:
            continue
        policy_threshold = ThresholdModel(min=spec.min, max=spec.max, max_drop=spec.max_drop)
        stated = (check.kind, check.severity, check.threshold)
        if stated != (spec.kind, spec.severity, policy_threshold):
            problems.append(
                f"check {check.id!r} is {_rule(check.kind, check.severity, check.threshold)} in its result "
                f"but {_rule(spec.kind, spec.severity, policy_threshold)} in the embedded policy"
            )
        waiver = policy.waiver_for(check.id)
        if check.waiver is not None and (
            waiver is None
            or (check.waiver.reason, check.waiver.approved_by, check.waiver.expires)
            != (waiver.reason, waiver.approved_by, waiver.expires)
        ):
            problems.append(f"check {check.id!r} carries a waiver the policy does not have")
    return problems


def _rule(kind: str, severity: str, threshold: ThresholdModel) -> str:
    limits = ", ".join(f"{name} {value:g}" for name, value in threshold.model_dump(exclude_none=True).items())
    return f"{kind}, severity {severity}" + (f", {limits}" if limits else "")


def check_predicate(predicate: dict[str, Any], *, where: str | Path) -> list[CheckResult]:
    """The statement's checks, if its verdict, exit code and statuses follow from them.

    Raises:
        AttestationError: the checks are malformed or contradict the verdict (a forged statement).
    """
    raw = predicate.get("checks")
    if not isinstance(raw, list):
        raise AttestationError("expected predicate.checks to be a list", path=where)
    checks = [_attested_check(entry, index, where) for index, entry in enumerate(raw)]
    exit_code = predicate.get("exitCode")
    if not isinstance(exit_code, int) or isinstance(exit_code, bool):
        raise AttestationError(
            f"expected predicate.exitCode to be an integer, found {exit_code!r}", path=where
        )
    problems = verdict_problems(predicate["verdict"], exit_code, checks)
    if problems:
        raise AttestationError(
            "the statement contradicts itself (was it edited?): " + "; ".join(problems), path=where
        )
    return checks


def _attested_check(entry: Any, index: int, where: str | Path) -> CheckResult:
    """One ``predicate.checks`` entry as a ``CheckResult``, so the verdict rules apply to it unchanged."""
    try:
        if not isinstance(entry, dict):
            raise TypeError(f"expected an object, found {type(entry).__name__}")
        interval, waiver, regression = entry.get("interval"), entry.get("waiver"), entry.get("regression")
        return CheckResult(
            id=entry["id"],
            kind=entry["kind"],
            status=entry["status"],
            severity=entry["severity"],
            metric=entry["metric"],
            value=entry.get("value"),
            n=entry.get("n", 0),
            threshold=ThresholdModel.model_validate(entry["threshold"]),
            interval=None if interval is None else IntervalModel(**interval, method="attested"),
            waiver=None
            if waiver is None
            else WaiverState(
                reason=waiver["reason"],
                approved_by=waiver["approvedBy"],
                expires=waiver["expires"],
                state=waiver["state"],
            ),
            regression=None if regression is None else Regression.model_validate(regression),
            message="",
        )
    except KeyError as error:
        raise AttestationError(f"predicate.checks[{index}] has no {error}", path=where) from None
    except (TypeError, ValueError, ValidationError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise AttestationError(
            f"predicate.checks[{index}] is not a gate check result: {first}", path=where
        ) from None


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
        if not isinstance(subject.get("name"), str) or subject_role(subject) not in ROLES:
            raise AttestationError(
                f"expected subject[{index}] to have a name and annotations.gate.role one of {', '.join(ROLES)}; "
                f"found name {subject.get('name')!r}, role {subject_role(subject)!r}",
                path=where,
            )
    roles = [subject_role(subject) for subject in subjects]
    if roles.count("model") != 1 or roles.count("model-source") > 1:
        raise AttestationError(
            f"expected one subject with role model and at most one model-source; found roles {roles}",
            path=where,
        )
    predicate = document.get("predicate")
    if not isinstance(predicate, dict) or predicate.get("verdict") not in ("pass", "fail", "error"):
        raise AttestationError("expected a predicate with a verdict of pass, fail or error", path=where)
    for section in ("model", "policy", "data"):
        if not isinstance(predicate.get(section), dict):
            raise AttestationError(f"expected predicate.{section} to be an object", path=where)
    check_predicate(predicate, where=where)
    return document


def subject_role(subject: dict[str, Any]) -> Any:
    """What a subject is to gate: ``model``, ``external-data`` or ``model-source`` (``annotations.gate.role``)."""
    annotations = subject.get("annotations")
    return annotations.get("gate.role") if isinstance(annotations, dict) else None


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
    source_sha256: str | None = None,
    policy_sha256: str | None = None,
    data_sha256: str | None = None,
) -> Verification:
    """Compare recomputed digests with every subject and section of a parsed statement.

    The model file must be the subject with role ``model`` (not merely any subject: its external-data file
    is one too), each external-data subject must be a file the model names with that digest and the other
    way round, and a model source, the policy and the data the statement names are ``unchecked`` unless
    their digests are given.
    """
    result = Verification(verdict=str(statement["predicate"]["verdict"]))
    predicate = statement["predicate"]
    subjects = statement["subject"]
    (attested_model,) = [s for s in subjects if subject_role(s) == "model"]
    name = model.path.name
    _compare(
        result,
        f"model {name} (subject {attested_model['name']!r})",
        model.sha256,
        attested_model["digest"]["sha256"],
    )
    if model.gate_sha256 is not None:
        _compare(
            result,
            f"model {name} as gate digests it"
            + (" (with its external data, by file name)" if model.external else ""),
            model.gate_sha256,
            predicate["model"].get("sha256"),
        )
    _compare_external(result, model, [s for s in subjects if subject_role(s) == "external-data"])
    sources = [s for s in subjects if subject_role(s) == "model-source"]
    if sources and source_sha256 is None:
        result.unchecked.append(f"model source {sources[0]['name']!r}: not checked; give --source FILE")
    elif sources and source_sha256 is not None:
        _compare(
            result, f"model source {sources[0]['name']!r}", source_sha256, sources[0]["digest"]["sha256"]
        )
    elif source_sha256 is not None:
        result.mismatched.append("model source: a file was given, but the statement names no model source")
    files = predicate["policy"].get("files")
    for what, actual, named, option in (
        ("policy", policy_sha256, files[-1] if isinstance(files, list) and files else None, "--policy"),
        ("data", data_sha256, predicate["data"].get("source"), "--data"),
    ):
        if actual is None:
            result.unchecked.append(f"{what}: not checked; give {option} (the statement names {named})")
        else:
            _compare(result, what, actual, predicate[what].get("sha256"))
    return result


def _compare_external(result: Verification, model: ModelDigests, attested: list[dict[str, Any]]) -> None:
    """The model's external-data files and the statement's external-data subjects, matched by name."""
    actual = {extra.name: extra.sha256 for extra in model.external}
    named = {subject["name"]: subject["digest"]["sha256"] for subject in attested}
    for file_name in sorted(set(actual) | set(named)):
        if file_name not in named:
            result.mismatched.append(
                f"external data {file_name}: sha256 {actual[file_name]} matches no subject of the statement"
            )
        elif file_name not in actual:
            result.mismatched.append(
                f"external data {file_name}: the statement names it, but {model.path.name} does not use it"
            )
        else:
            _compare(result, f"external data {file_name}", actual[file_name], named[file_name])


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
    "check_predicate",
    "check_report",
    "data_digest",
    "file_sha256",
    "model_digests",
    "parse_statement",
    "policy_digest",
    "read_regular",
    "report_subjects",
    "status_problems",
    "subject_role",
    "verify_statement",
]
