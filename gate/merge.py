"""Combining the partial reports of a sharded run (``gate check --shard K/N``) into one decision.

Per-sample values are concatenated in data set order and judged again with the policy stored in the
reports, so the merged report decides exactly as an unsharded run with the same seed would: attack and
corruption randomness is keyed by sample index, never by shard. Whole-set diagnostics (such as
``gradient_masking``) run in shard 1 only and are taken from there.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import TypeAdapter, ValidationError

from gate.checks.base import Measurement
from gate.errors import UsageError
from gate.policy.checks import AnyCheckSpec, CheckSpec
from gate.policy.model import Policy
from gate.report.model import CheckResult, DataInfo, Report
from gate.runner import summarise, verdict_message, waivers_in_state
from gate.verdict import JudgeSettings, error_result, judge, overall_verdict


@dataclass(frozen=True)
class PartialReport:
    shard: tuple[int, int]
    report: Report
    directory: Path


def read_partial(directory: Path) -> PartialReport:
    """One shard's report folder; refuses unsharded or unreadable reports with a clear message."""
    path = directory / "report.json"
    try:
        report = Report.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise UsageError("no report.json in this folder", path=directory) from None
    except (ValidationError, ValueError) as exc:
        raise UsageError(f"not a gate report: {str(exc).splitlines()[0]}", path=path) from None
    if report.data.shard is None or report.resolved_policy is None:
        raise UsageError("this report is not from a sharded run (gate check --shard K/N)", path=path)
    index, total = (int(part) for part in report.data.shard.split("/"))
    return PartialReport((index, total), report, directory)


def check_compatible(partials: list[PartialReport]) -> int:
    """Every shard 1..N exactly once, all of the same model, policy, data and seed; returns N."""
    if not partials:
        raise UsageError("gate merge needs at least one report folder")
    totals = {partial.shard[1] for partial in partials}
    if len(totals) != 1:
        raise UsageError(f"the reports come from runs split differently: N = {sorted(totals)}")
    (total,) = totals
    seen = sorted(partial.shard[0] for partial in partials)
    if seen != list(range(1, total + 1)):
        raise UsageError(f"need shards 1..{total} exactly once each; found {seen}")
    first = partials[0].report
    for partial in partials[1:]:
        other = partial.report
        for label, mine, theirs in (
            ("model", first.model.sha256, other.model.sha256),
            ("policy", first.policy.sha256, other.policy.sha256),
            ("data", first.data.sha256, other.data.sha256),
            ("seed", first.seed, other.seed),
        ):
            if mine != theirs:
                raise UsageError(
                    f"shard {partial.shard[0]} evaluated a different {label} than shard 1",
                    path=partial.directory,
                )
    return total


def merge_reports(
    directories: list[Path],
    output: Path,
    *,
    today: dt.date | None = None,
    baseline: dict[str, CheckResult] | None = None,
) -> Report:
    """The final report of a sharded run; evidence files of shard 1 are copied into ``output``."""
    partials = sorted((read_partial(Path(d)) for d in directories), key=lambda p: p.shard[0])
    total = check_compatible(partials)
    first = partials[0].report
    policy = Policy.model_validate(first.resolved_policy)
    settings = JudgeSettings(
        confidence=policy.confidence, today=today or dt.date.today(), seed=first.seed,
        baseline_given=baseline is not None,
    )  # fmt: skip
    specs = {
        spec.id: spec
        for spec in TypeAdapter(list[AnyCheckSpec]).validate_python(first.resolved_policy["checks"])
    }
    results = []
    for position, first_result in enumerate(first.checks):
        shard_results = [partial.report.checks[position] for partial in partials]
        merged = _merge_check(
            specs[first_result.id], shard_results, policy, settings, (baseline or {}).get(first_result.id)
        )
        results.append(merged)
    _copy_evidence(partials[0].directory, output)
    verdict, exit_code = overall_verdict(results)
    return first.model_copy(
        update={
            "verdict": verdict,
            "exit_code": exit_code,
            "message": verdict_message(verdict, results),
            "checks": results,
            "summary": summarise(results),
            "data": DataInfo(
                source=first.data.source, sha256=first.data.sha256, n=sum(p.report.data.n for p in partials)
            ),
            "duration_s": max(p.report.duration_s for p in partials),
            "timings": {**first.timings, "shards": float(total)},
            "stale_waivers": waivers_in_state(results, "stale"),
            "expired_waivers": waivers_in_state(results, "expired"),
        }
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
    if all(r.details.get("deferred_to_shard") == 1 for r in shard_results[1:]):
        # A whole-set diagnostic: shard 1 evaluated it for every shard.
        return base.model_copy(update={"samples": None})
    records = [r.samples for r in shard_results if r.samples is not None]
    if len(records) != len(shard_results):
        message = "cannot merge: a shard's result carries no per-sample values (was it run with --shard?)"
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
    measurement.findings = [finding for r in shard_results for finding in r.findings]
    result = judge(spec, measurement, settings, waiver=waiver, baseline=baseline)
    return _located(result, base).model_copy(
        update={"artifacts": base.artifacts, "duration_s": sum(r.duration_s for r in shard_results)}
    )


def _located(result: CheckResult, base: CheckResult) -> CheckResult:
    return result.model_copy(update={"location": base.location})


def _copy_evidence(source: Path, output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    for folder in ("artifacts", "model"):
        if (source / folder).is_dir():
            shutil.copytree(source / folder, output / folder, dirs_exist_ok=True)
