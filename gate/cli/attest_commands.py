"""``gate attest`` and ``gate verify``: an in-toto statement of a run's verdict, and checking artifacts against it.

Both read files a pull request may have forged: only regular files are read (a FIFO would hang), a report
is attested only if its verdict follows from its checks, and a statement verifies only if its own verdict
does, every subject matches a file and the policy and data were checked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

import click
from pydantic import ValidationError

from gate import console
from gate.attest import (
    AttestationError,
    build_predicate,
    build_statement,
    check_report,
    data_digest,
    file_sha256,
    model_digests,
    parse_statement,
    policy_digest,
    read_regular,
    report_subjects,
    verify_statement,
)
from gate.cli import main
from gate.errors import EXIT_FAIL, EXIT_PASS
from gate.report.model import Report

MAX_STATEMENT_BYTES = 10 * 1024**2
MAX_REPORT_BYTES = 1024**3
"""A report keeps per-sample values only in shards; a real one is far smaller."""


@main.command("attest")
@click.argument("report_dir", type=click.Path(path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    help="Where to write the statement (default: REPORT_DIR/statement.json).",
)
@click.option(
    "--predicate",
    "predicate_output",
    type=click.Path(path_type=Path),
    help="Also write the predicate alone (for actions/attest's predicate-path).",
)
def attest(report_dir: Path, output: Path | None, predicate_output: Path | None) -> None:
    """Write an in-toto Statement v1 of the verdict in REPORT_DIR/report.json, ready for signing."""
    from gate.report import write_atomic

    report_path = report_dir / "report.json"
    if not report_path.exists() and not report_path.is_symlink():
        raise AttestationError("no report.json here; run gate check first", path=report_path)
    raw = read_regular(report_path, limit=MAX_REPORT_BYTES, what="report.json")
    report = _parse_report(raw, report_path)
    check_report(report, where=report_path)
    subjects = report_subjects(report, report_dir)
    # The digest is of the very bytes just checked, not of a second read that could differ.
    predicate = build_predicate(
        report,
        report_sha256=hashlib.sha256(raw).hexdigest(),
        attested_at=dt.datetime.now(dt.timezone.utc),
    )
    statement = build_statement(subjects, predicate)
    target = output or report_dir / "statement.json"
    write_atomic(target, json.dumps(statement, indent=2) + "\n")
    if predicate_output is not None:
        write_atomic(predicate_output, json.dumps(predicate, indent=2) + "\n")
    names = ", ".join(subject.name for subject in subjects)
    console.out(f"wrote {target}: verdict {report.verdict} for {names}")


def _parse_report(raw: bytes, path: Path) -> Report:
    try:
        return Report.model_validate_json(raw)
    except (ValidationError, ValueError) as exc:
        first = str(exc).splitlines()[0]
        raise AttestationError(f"not a gate report.json: {first}", path=path) from None


@main.command("verify")
@click.option(
    "--attestation",
    "-a",
    type=click.Path(path_type=Path),
    required=True,
    help="The statement (or a DSSE envelope of it).",
)
@click.option(
    "--model",
    "-m",
    type=click.Path(path_type=Path),
    required=True,
    help="The ONNX model file to verify (its external-data files are found beside it).",
)
@click.option("--policy", "-p", help="The policy (file or builtin:NAME) to verify; needed for a pass.")
@click.option("--data", "-d", help="The .npz file or image folder to verify; needed for a pass.")
@click.option(
    "--source",
    type=click.Path(path_type=Path),
    help="The PyTorch source file, when the statement names one (role model-source); needed for a pass then.",
)
def verify(attestation: Path, model: Path, policy: str | None, data: str | None, source: Path | None) -> None:
    """Check artifacts against an attestation: exit 0 if every subject, the policy and the data match and
    the verdict is pass, else 1."""
    document = _read_json(attestation)
    digests = model_digests(model, onnx=True)  # an unsafe model is refused whatever the statement says
    statement = parse_statement(document, where=attestation)
    result = verify_statement(
        statement,
        model=digests,
        source_sha256=_source_sha256(source) if source else None,
        policy_sha256=policy_digest(policy) if policy else None,
        data_sha256=data_digest(data) if data else None,
    )
    for line in result.matched:
        console.out(f"  match     {line}")
    for line in result.mismatched:
        console.out(f"  MISMATCH  {line}")
    for line in result.unchecked:
        console.out(f"  UNCHECKED {line}")
    verdict = result.verdict
    console.out(f"  verdict   {verdict}" + ("" if verdict == "pass" else " (the attested run did not pass)"))
    if result.ok:
        console.out("verified: the artifacts are the ones attested, and the attested verdict is pass")
        sys.exit(EXIT_PASS)
    reasons = [f"{len(result.mismatched)} digest(s) do not match"] if result.mismatched else []
    reasons += [f"{len(result.unchecked)} attested artifact(s) were not checked"] if result.unchecked else []
    reasons += [] if verdict == "pass" else [f"the attested verdict is {verdict}"]
    console.error("not verified: " + "; ".join(reasons))
    sys.exit(EXIT_FAIL)


def _read_json(path: Path) -> object:
    raw = read_regular(path, limit=MAX_STATEMENT_BYTES, what="attestation")
    try:
        return json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise AttestationError(f"not a JSON statement: {exc}", path=path) from None


def _source_sha256(path: Path) -> str:
    from gate.model.files import checked_file

    return file_sha256(checked_file(path, "model source file"))
