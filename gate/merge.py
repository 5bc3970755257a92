"""Combining the partial reports of a sharded run (``gate check --shard K/N``) into one decision.

Per-sample values are concatenated in data set order and judged again with the policy stored in the
reports, so the merged report decides exactly as an unsharded run with the same seed would: attack and
corruption randomness is keyed by sample index, never by shard. Whole-set diagnostics (``gradient_masking``,
``model_sanity``) run in shard 1 only; their value is taken from there and judged again.

Shard folders are input, not gate's own output (a CI artifact can be replaced), so nothing in them is taken
on trust: every shard's ``run.json`` must agree on the model, policy, data, seed, samples and model options,
each report's embedded policy must hash to the digest its ``run.json`` records, checks are matched by id,
each shard's samples must be the slice of the selection its index says, and only regular files are copied
out of shard 1 (a link is never followed).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from gate.errors import UsageError
from gate.measurement import Measurement
from gate.policy.model import Policy
from gate.policy.specs import CheckSpec
from gate.report.assemble import summarise, verdict_message, waivers_in_state
from gate.report.model import CheckResult, DataInfo, Report, SampleRecord
from gate.resume import FINGERPRINT_FILE, RunFingerprint, document_sha256
from gate.stats import Interval
from gate.verdict import JudgeSettings, error_result, judge, overall_verdict

logger = logging.getLogger(__name__)

DEFERRED_KINDS = frozenset({"gradient_masking", "model_sanity", "calibration", "subgroup", "attack_selftest"})
"""Kinds that run once, in shard 1, on the whole selection; no other kind may defer to shard 1."""
EVIDENCE_FOLDERS = ("artifacts", "model")
_SHARD = re.compile(r"([1-9][0-9]{0,5})/([1-9][0-9]{0,5})")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_LABELS = {
    "gate": "gate version",
    "model_sha256": "model (sha256)",
    "policy_sha256": "policy (sha256 of its files)",
    "resolved_policy_sha256": "embedded policy (sha256)",
    "data_sha256": "data (sha256)",
    "seed": "seed",
    "samples": "number of samples (--samples or the policy's)",
}


@dataclass(frozen=True)
class PartialReport:
    shard: tuple[int, int]
    report: Report
    fingerprint: RunFingerprint
    directory: Path


def read_partial(directory: Path) -> PartialReport:
    """One shard's report folder: its report.json and run.json, each bound to the other."""
    path = directory / "report.json"
    try:
        report = Report.model_validate_json(read_regular(path))
    except (ValidationError, ValueError) as exc:
        raise UsageError(f"not a gate report: {str(exc).splitlines()[0]}", path=path) from None
    if report.data.shard is None or report.resolved_policy is None:
        raise UsageError("this report is not from a sharded run (gate check --shard K/N)", path=path)
    match = _SHARD.fullmatch(report.data.shard)
    if match is None or not 1 <= int(match[1]) <= int(match[2]):
        raise UsageError(
            f"expected data.shard to be K/N with 1 <= K <= N, found {report.data.shard!r}", path=path
        )
    shard = (int(match[1]), int(match[2]))
    fingerprint = _read_fingerprint(directory / FINGERPRINT_FILE)
    _check_bound(report, fingerprint, shard[0], path)
    return PartialReport(shard, report, fingerprint, directory)


def read_regular(path: Path) -> bytes:
    """The bytes of a regular file, refusing links, FIFOs and devices (a FIFO would hang the merge)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
    except FileNotFoundError:
        raise UsageError(f"expected {path.name} in this shard's folder, found none", path=path) from None
    except OSError as exc:
        raise UsageError(
            f"expected {path.name} to be a regular file, found a link or special file ({exc.strerror})",
            path=path,
        ) from None
    with os.fdopen(descriptor, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise UsageError(f"expected {path.name} to be a regular file, found a special file", path=path)
        return stream.read()


def _read_fingerprint(path: Path) -> RunFingerprint:
    try:
        return RunFingerprint.from_json(json.loads(read_regular(path)))
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"not a gate run.json ({exc}); shards are written by gate check --shard K/N of this gate version",
            path=path,
        ) from None


def _check_bound(report: Report, fingerprint: RunFingerprint, shard: int, path: Path) -> None:
    """report.json must describe the run its run.json records, and embed the policy with that digest."""
    for label, in_report, in_run in (
        ("shard", report.data.shard, fingerprint.shard),
        ("model sha256", report.model.sha256, fingerprint.model_sha256),
        ("policy sha256", report.policy.sha256, fingerprint.policy_sha256),
        ("data sha256", report.data.sha256, fingerprint.data_sha256),
        ("seed", report.seed, fingerprint.seed),
        (
            "embedded policy sha256",
            document_sha256(report.resolved_policy),
            fingerprint.resolved_policy_sha256,
        ),
    ):
        if in_report != in_run:
            raise UsageError(
                f"shard {shard}: report.json and {FINGERPRINT_FILE} disagree on the {label}: {in_report} in "
                f"report.json, {in_run} in {FINGERPRINT_FILE}; the folder was edited or mixes two runs",
                path=path,
            )


def check_compatible(partials: list[PartialReport]) -> int:
    """Every shard 1..N exactly once, all run with the same model, policy, data, seed, samples and model
    options; returns N."""
    if not partials:
        raise UsageError("gate merge needs at least one report folder")
    totals = {partial.shard[1] for partial in partials}
    if len(totals) != 1:
        raise UsageError(f"the reports come from runs split differently: N = {sorted(totals)}")
    (total,) = totals
    seen = sorted(partial.shard[0] for partial in partials)
    if seen != list(range(1, total + 1)):
        raise UsageError(f"need shards 1..{total} exactly once each; found {seen}")
    first = partials[0].fingerprint
    for partial in partials[1:]:
        for name in RunFingerprint.SHARED:
            for label, mine, theirs in _differences(
                name, getattr(first, name), getattr(partial.fingerprint, name)
            ):
                raise UsageError(
                    f"shard {partial.shard[0]} was run with a different {label} than shard 1: "
                    f"{_shown(theirs)} in shard {partial.shard[0]}, {_shown(mine)} in shard 1",
                    path=partial.directory / FINGERPRINT_FILE,
                )
    return total


def _differences(name: str, mine: Any, theirs: Any) -> list[tuple[str, Any, Any]]:
    if name != "model_options":
        return [] if mine == theirs else [(_LABELS[name], mine, theirs)]
    keys = sorted(set(mine) | set(theirs))
    return [
        (f"model option {key}", mine.get(key), theirs.get(key))
        for key in keys
        if mine.get(key) != theirs.get(key)
    ]


def _shown(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def merge_reports(
    directories: list[Path],
    output: Path,
    *,
    today: dt.date | None = None,
    baseline: dict[str, CheckResult] | None = None,
) -> Report:
    """The final report of a sharded run; regular evidence files of shard 1 are copied into ``output``."""
    partials = sorted((read_partial(Path(d)) for d in directories), key=lambda p: p.shard[0])
    total = check_compatible(partials)
    first = partials[0].report
    policy = _embedded_policy(partials[0])
    settings = JudgeSettings(
        confidence=policy.confidence, today=today or dt.date.today(), seed=first.seed,
        baseline_given=baseline is not None,
    )  # fmt: skip
    by_shard = [_results_by_id(partial, policy) for partial in partials]
    _check_selection(partials, by_shard)
    results = [
        _merge_check(
            spec, [results[spec.id] for results in by_shard], policy, settings, (baseline or {}).get(spec.id)
        )
        for spec in policy.checks
    ]
    skipped = _copy_evidence(partials[0].directory, output)
    if skipped:
        logger.warning(
            "merge: not copied from shard 1 (only regular files are, links are never followed): %s",
            ", ".join(str(path) for path in skipped),
        )
    verdict, exit_code = overall_verdict(results)
    return first.model_copy(
        update={
            "verdict": verdict,
            "exit_code": exit_code,
            "message": verdict_message(verdict, results),
            "checks": results,
            "summary": summarise(results),
            "data": DataInfo(
                source=first.data.source,
                sha256=first.data.sha256,
                n=sum(p.report.data.n for p in partials),
                notes=list(dict.fromkeys(note for p in partials for note in p.report.data.notes)),
            ),
            "duration_s": max(p.report.duration_s for p in partials),
            "timings": {**first.timings, "shards": float(total)},
            "stale_waivers": waivers_in_state(results, "stale"),
            "expired_waivers": waivers_in_state(results, "expired"),
            "resumed_entries": sum(p.report.resumed_entries for p in partials),
        }
    )


def _embedded_policy(partial: PartialReport) -> Policy:
    try:
        policy = Policy.model_validate(partial.report.resolved_policy)
    except ValidationError as exc:
        raise UsageError(
            f"the embedded policy is not a valid policy: {str(exc).splitlines()[0]}",
            path=partial.directory / "report.json",
        ) from None
    ids = [spec.id for spec in policy.checks]
    if len(set(ids)) != len(ids):
        raise UsageError("the embedded policy names a check id twice", path=partial.directory / "report.json")
    return policy


def _results_by_id(partial: PartialReport, policy: Policy) -> dict[str, CheckResult]:
    """A shard's results by check id: exactly one per check of the policy, of the policy's kind and metric."""
    where = partial.directory / "report.json"
    index = partial.shard[0]
    results: dict[str, CheckResult] = {}
    for result in partial.report.checks:
        if result.id in results:
            raise UsageError(f"shard {index} has two results for check {result.id!r}", path=where)
        results[result.id] = result
    expected = [spec.id for spec in policy.checks]
    missing = [check for check in expected if check not in results]
    extra = [check for check in results if check not in expected]
    if missing or extra:
        raise UsageError(
            f"expected shard {index} to have one result for each check of its policy ({', '.join(expected)}); "
            f"found none for {missing or '-'} and results for checks the policy lacks: {extra or '-'}",
            path=where,
        )
    for spec in policy.checks:
        result = results[spec.id]
        if (result.kind, result.metric) != (spec.kind, spec.metric_name):
            raise UsageError(
                f"shard {index}'s result for check {spec.id!r} is {result.kind}/{result.metric}; its policy "
                f"says {spec.kind}/{spec.metric_name}",
                path=where,
            )
    return results


def _check_selection(partials: list[PartialReport], by_shard: list[dict[str, CheckResult]]) -> None:
    """Per-sample records must be the shard's slice of one selection: shard K holds every N-th sample of
    the sorted union, starting at the K-th, as ``select_indices`` splits it, and nothing twice."""
    total = len(partials)
    records = [[r.samples for r in results.values() if r.samples is not None] for results in by_shard]
    shard_index: list[list[int]] = []
    for partial, shard_records in zip(partials, records, strict=True):
        where = partial.directory / "report.json"
        indices = {tuple(record.index) for record in shard_records}
        if len(indices) > 1:
            raise UsageError(f"shard {partial.shard[0]}'s checks evaluated different samples", path=where)
        index = list(next(iter(indices))) if indices else []
        for record in shard_records:
            _check_record(record, partial.shard[0], where)
        if indices and len(index) != partial.report.data.n:
            raise UsageError(
                f"shard {partial.shard[0]} reports {partial.report.data.n} samples but its checks hold "
                f"{len(index)}",
                path=where,
            )
        shard_index.append(index)
    if not any(shard_index):
        return
    union = sorted(i for index in shard_index for i in index)
    if len(set(union)) != len(union):
        raise UsageError(
            "the shards hold some samples more than once; shards of one run are disjoint, so they come from "
            "different runs or were edited"
        )
    for partial, index in zip(partials, shard_index, strict=True):
        if index != union[partial.shard[0] - 1 :: total]:
            raise UsageError(
                f"shard {partial.shard[0]}'s samples are not its slice of the selection (every {total}th from "
                f"the {partial.shard[0]}th); the shards come from different selections or were edited",
                path=partial.directory / "report.json",
            )
    samples = partials[0].fingerprint.samples
    if samples is not None and len(union) > samples:
        raise UsageError(f"the shards hold {len(union)} samples, more than the run's samples ({samples})")


def _check_record(record: SampleRecord, shard: int, where: Path) -> None:
    ascending = all(later > earlier for earlier, later in itertools.pairwise(record.index))
    if len(record.values) != len(record.index) or not ascending:
        raise UsageError(
            f"shard {shard}: a check's per-sample record is malformed (expected ascending, distinct indices "
            "and one value each)",
            path=where,
        )
    if not all(math.isfinite(v) for v in record.values) or (
        record.proportion and not all(v in (0.0, 1.0) for v in record.values)
    ):
        raise UsageError(
            f"shard {shard}: a check's per-sample values are not finite (or, for a proportion, not 0 or 1)",
            path=where,
        )


def _merge_check(
    spec: CheckSpec,
    shard_results: list[CheckResult],
    policy: Policy,
    settings: JudgeSettings,
    baseline: CheckResult | None,
) -> CheckResult:
    base = shard_results[0]
    waiver = policy.waiver_for(spec.id)
    errors = [f"shard {i}: {r.message}" for i, r in enumerate(shard_results, start=1) if r.status == "error"]
    if errors:
        return _located(error_result(spec, "; ".join(errors), waiver, settings), base)
    if spec.kind in DEFERRED_KINDS and all(
        r.details.get("deferred_to_shard") == 1 for r in shard_results[1:]
    ):
        return _judged_in_shard_one(spec, base, policy, settings, baseline)
    records = [r.samples for r in shard_results if r.samples is not None]
    if len(records) != len(shard_results):
        message = "cannot merge: a shard's result carries no per-sample values (was it run with --shard?)"
        return _located(error_result(spec, message, waiver, settings), base)
    if len({record.proportion for record in records}) != 1:
        message = "cannot merge: the shards disagree on whether the metric is a proportion"
        return _located(error_result(spec, message, waiver, settings), base)
    index = np.concatenate([np.asarray(record.index, dtype=np.int64) for record in records])
    values = np.concatenate([np.asarray(record.values, dtype=np.float64) for record in records])
    order = np.argsort(index, kind="stable")
    values = values[order]
    if records[0].proportion:
        measurement = Measurement.proportion(values > 0.5)
    else:
        measurement = Measurement.mean_of(values)
    measurement.details = {**base.details, "merged_shards": len(shard_results)}
    adaptive = [r.details["adaptive"] for r in shard_results if isinstance(r.details.get("adaptive"), dict)]
    if adaptive:
        measurement.details["adaptive"] = merge_adaptive_records(adaptive)
    measurement.findings = [finding for r in shard_results for finding in r.findings]
    # A secondary threshold one shard found broken (export parity's max_abs_diff) fails the merged check too.
    measurement.violations = list(dict.fromkeys(v for r in shard_results for v in r.violations))
    result = judge(spec, measurement, settings, waiver=waiver, baseline=baseline)
    return _located(result, base).model_copy(
        update={"artifacts": base.artifacts, "duration_s": sum(r.duration_s for r in shard_results)}
    )


def merge_adaptive_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The shards' ``adaptive`` records of an adversarial check (gate/checks/adaptive.py) as one: a
    diagnosis any shard made counts, each escalation's samples, breaks and seconds add up, and the plain
    robust accuracy is recomputed over all attacked samples."""
    merged: dict[str, Any] = {**records[0], "escalations": [], "unavailable": []}
    diagnosis: dict[str, Any] = {}
    for record in records:
        for key, value in record.get("diagnosis", {}).items():
            if isinstance(value, bool):
                diagnosis[key] = diagnosis.get(key, False) or value
            elif isinstance(value, list):
                diagnosis[key] = sorted({*diagnosis.get(key, []), *value})
            elif isinstance(value, (int, float)):
                diagnosis[key] = max(diagnosis.get(key, value), value)
            else:
                diagnosis.setdefault(key, value)
    merged["diagnosis"] = diagnosis
    steps: dict[str, dict[str, Any]] = {}
    for record in records:
        for step in record.get("escalations", []):
            total = steps.setdefault(
                step["escalation"], {**step, "samples_attacked": 0, "newly_broken": 0, "seconds": 0.0}
            )
            for key in ("samples_attacked", "newly_broken", "seconds"):
                total[key] += step[key]
        merged["unavailable"] = list(dict.fromkeys([*merged["unavailable"], *record.get("unavailable", [])]))
    merged["escalations"] = list(steps.values())
    merged["lowered_by"] = [name for name, step in steps.items() if step["newly_broken"]]
    merged["judged_over_draws"] = max(record.get("judged_over_draws", 1) for record in records)
    samples = [record.get("samples", 0) for record in records]
    if all(samples):
        robust = sum(record["plain_robust_accuracy"] * n for record, n in zip(records, samples, strict=True))
        merged["samples"] = sum(samples)
        merged["plain_robust_accuracy"] = robust / merged["samples"]
    return merged


def _judged_in_shard_one(
    spec: CheckSpec, base: CheckResult, policy: Policy, settings: JudgeSettings, baseline: CheckResult | None
) -> CheckResult:
    """A whole-set diagnostic: shard 1 measured it for every shard; the merge judges it with the policy."""
    waiver = policy.waiver_for(spec.id)
    if base.value is None or base.details.get("deferred_to_shard") is not None:
        message = "cannot merge: shard 1 carries no value for this whole-set diagnostic"
        return _located(error_result(spec, message, waiver, settings), base)
    if base.interval is not None and not all(map(math.isfinite, (base.interval.lower, base.interval.upper))):
        message = "cannot merge: shard 1's interval for this whole-set diagnostic is not finite"
        return _located(error_result(spec, message, waiver, settings), base)
    measurement = Measurement(
        value=base.value, n=base.n, details=dict(base.details), findings=list(base.findings),
        incomplete=list(base.details.get("incomplete", [])), violations=list(base.violations),
        # a whole-set interval (subgroup's corrected one) cannot be rebuilt from the shards: shard 1's is kept
        interval=None if base.interval is None else Interval(**base.interval.model_dump()),
    )  # fmt: skip
    result = judge(spec, measurement, settings, waiver=waiver, baseline=baseline)
    return _located(result, base).model_copy(
        update={"artifacts": base.artifacts, "duration_s": base.duration_s}
    )


def _located(result: CheckResult, base: CheckResult) -> CheckResult:
    return result.model_copy(update={"location": base.location})


def _copy_evidence(source: Path, output: Path) -> list[Path]:
    """Copy shard 1's evidence folders into ``output``: regular files only, never through a link.

    Returns what was skipped (links, FIFOs, devices), so a caller can say so.
    """
    from gate.report.folder import owned_folder

    output.mkdir(parents=True, exist_ok=True)
    if output.resolve() == source.resolve():
        return []  # merged into shard 1's own folder: its evidence is already there
    skipped: list[Path] = []
    for folder in EVIDENCE_FOLDERS:
        origin = source / folder
        if origin.is_symlink() or not origin.is_dir():
            skipped += [origin] if origin.is_symlink() else []
            continue
        skipped += _copy_tree(origin, owned_folder(output / folder, keep=False))
    return skipped


def _copy_tree(source: Path, target: Path) -> list[Path]:
    skipped: list[Path] = []
    pending = [(source, target)]
    while pending:
        here, there = pending.pop()
        with os.scandir(here) as entries:
            for entry in entries:
                origin, copy = Path(entry.path), there / entry.name
                if entry.is_dir(follow_symlinks=False):
                    copy.mkdir(exist_ok=True)
                    pending.append((origin, copy))
                elif not entry.is_file(follow_symlinks=False) or not _copy_regular(origin, copy):
                    skipped.append(origin)
    return skipped


def _copy_regular(origin: Path, copy: Path) -> bool:
    """Copy one regular file without following a link at either end; False if it is not one."""
    try:
        source = os.open(origin, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
    except OSError:
        return False
    with os.fdopen(source, "rb") as reader:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
            return False
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
        with os.fdopen(os.open(copy, flags, 0o644), "wb") as writer:
            while block := reader.read(1 << 20):
                writer.write(block)
    return True
