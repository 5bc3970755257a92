"""``gate attest`` and ``gate verify``: an in-toto statement of a run's verdict, and checking artifacts against it."""

from __future__ import annotations

import datetime as dt
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
    data_digest,
    file_sha256,
    model_digests,
    parse_statement,
    policy_digest,
    report_subjects,
    verify_statement,
)
from gate.cli import main
from gate.errors import EXIT_FAIL, EXIT_PASS
from gate.report.model import Report

MAX_STATEMENT_BYTES = 10 * 1024**2


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
    report = _read_report(report_path)
    subjects = report_subjects(report, report_dir)
    predicate = build_predicate(
        report, report_sha256=file_sha256(report_path), attested_at=dt.datetime.now(dt.timezone.utc)
    )
    statement = build_statement(subjects, predicate)
    target = output or report_dir / "statement.json"
    write_atomic(target, json.dumps(statement, indent=2) + "\n")
    if predicate_output is not None:
        write_atomic(predicate_output, json.dumps(predicate, indent=2) + "\n")
    names = ", ".join(subject.name for subject in subjects)
    console.out(f"wrote {target}: verdict {report.verdict} for {names}")


def _read_report(path: Path) -> Report:
    try:
        return Report.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise AttestationError("no report.json here; run gate check first", path=path) from None
    except (ValidationError, ValueError, OSError) as exc:
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
    "--model", "-m", type=click.Path(path_type=Path), required=True, help="The model file to verify."
)
@click.option("--policy", "-p", help="Also verify this policy (file or builtin:NAME) against the statement.")
@click.option("--data", "-d", help="Also verify this .npz file or image folder against the statement.")
def verify(attestation: Path, model: Path, policy: str | None, data: str | None) -> None:
    """Check artifacts against an attestation: exit 0 if they match and the verdict is pass, else 1."""
    statement = parse_statement(_read_json(attestation), where=attestation)
    result = verify_statement(
        statement,
        model=model_digests(model),
        policy_sha256=policy_digest(policy) if policy else None,
        data_sha256=data_digest(data) if data else None,
    )
    for line in result.matched:
        console.out(f"  match     {line}")
    for line in result.mismatched:
        console.out(f"  MISMATCH  {line}")
    verdict = result.verdict
    console.out(f"  verdict   {verdict}" + ("" if verdict == "pass" else " (the attested run did not pass)"))
    if result.ok:
        console.out("verified: the artifacts are the ones attested, and the attested verdict is pass")
        sys.exit(EXIT_PASS)
    reasons = [f"{len(result.mismatched)} digest(s) do not match"] if result.mismatched else []
    reasons += [] if verdict == "pass" else [f"the attested verdict is {verdict}"]
    console.error("not verified: " + "; ".join(reasons))
    sys.exit(EXIT_FAIL)


def _read_json(path: Path) -> object:
    try:
        size = path.stat().st_size
        if size > MAX_STATEMENT_BYTES:
            raise AttestationError(
                f"the statement is {size} bytes; the limit is {MAX_STATEMENT_BYTES}", path=path
            )
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise AttestationError("attestation not found", path=path) from None
    except (ValueError, OSError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise AttestationError(f"not a JSON statement: {exc}", path=path) from None
