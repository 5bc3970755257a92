"""Judging measurements: thresholds on confidence bounds, regressions, severity and waivers → statuses.

The rules, in one place:
- a ``min`` passes only if the interval's lower bound reaches it, a ``max`` only if the upper bound
  stays under it (with ``confidence: null`` the point value is compared);
- ``max_drop`` (with a baseline report) fails when the one-sided lower confidence bound of the drop
  exceeds it, so sampling noise does not block and a real drop does;
- a failing ``warn`` check is ``warn``; a failing check with an active waiver is ``waived``; an expired
  waiver no longer applies; a waiver on a passing check is reported ``stale``;
- any check that could not be evaluated is ``error`` and makes the run ``error`` (exit 3), whatever else
  passed: the gate fails closed.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from gate.errors import EXIT_ERROR, EXIT_FAIL, EXIT_PASS
from gate.measurement import Measurement
from gate.policy.model import Waiver
from gate.policy.specs import CheckSpec
from gate.report.model import (
    CheckResult,
    IntervalModel,
    Regression,
    ThresholdModel,
    WaiverState,
)
from gate.stats import (
    Interval,
    bootstrap_mean_interval,
    clopper_pearson,
    difference_lower_bound,
    normal_difference_lower_bound,
    samples_to_decide_mean,
    samples_to_decide_proportion,
)


@dataclass(frozen=True)
class JudgeSettings:
    confidence: float | None
    today: dt.date
    seed: int = 0
    baseline_given: bool = False


def measurement_interval(measurement: Measurement, confidence: float | None, seed: int) -> Interval | None:
    """The interval a measurement is judged by: exact for proportions, bootstrap for means."""
    if confidence is None:
        return None
    if measurement.interval is not None:
        return measurement.interval
    if measurement.successes is not None:
        return clopper_pearson(measurement.successes, measurement.n, confidence)
    if measurement.per_sample is not None and measurement.per_sample.size > 1:
        return bootstrap_mean_interval(measurement.per_sample, confidence, seed=seed)
    return None


def judge(
    spec: CheckSpec,
    measurement: Measurement,
    settings: JudgeSettings,
    *,
    waiver: Waiver | None = None,
    baseline: CheckResult | None = None,
) -> CheckResult:
    """Turn one measurement into a status and a message a release manager can act on."""
    if not math.isfinite(measurement.value):
        return error_result(
            spec, f"the check produced a non-finite value ({measurement.value})", waiver, settings
        )
    interval = measurement_interval(measurement, settings.confidence, settings.seed)
    low, high = (interval.lower, interval.upper) if interval else (measurement.value, measurement.value)
    reasons: list[str] = []
    if spec.min is not None and low < spec.min:
        reasons.append(f"{'lower bound ' if interval else ''}{low:.4g} is below min {spec.min:.4g}")
    if spec.max is not None and high > spec.max:
        reasons.append(f"{'upper bound ' if interval else ''}{high:.4g} is above max {spec.max:.4g}")
    reasons.extend(measurement.violations)
    regression = _regression(spec, measurement, interval, baseline, settings.confidence)
    if regression is not None and regression.regressed:
        reasons.append(f"it dropped by more than max_drop {spec.max_drop:.4g} against the baseline")
    unjudged = spec.max_drop is not None and regression is None and spec.min is None and spec.max is None
    failed = bool(reasons)
    waiver_state = _waiver_state(waiver, failed, settings.today)
    if not failed:
        status = "warn" if measurement.incomplete else "pass"
    elif waiver_state is not None and waiver_state.state == "active":
        status = "waived"
    else:
        status = "warn" if spec.severity == "warn" else "fail"
    to_decide = _samples_to_decide(spec, measurement, interval)
    result = CheckResult(
        id=spec.id,
        kind=spec.kind,
        description=spec.description,
        status=status,
        severity=spec.severity,
        metric=spec.metric_name,
        value=measurement.value,
        interval=IntervalModel(**vars(interval)) if interval else None,
        n=measurement.n,
        successes=measurement.successes,
        threshold=ThresholdModel(min=spec.min, max=spec.max, max_drop=spec.max_drop),
        waiver=waiver_state,
        message=_message(spec, measurement, interval, reasons, waiver_state, to_decide),
        samples_to_decide=to_decide,
        regression=regression,
        findings=measurement.findings,
        violations=list(measurement.violations),
        details=measurement.details,
    )
    if unjudged:
        # The value is kept so this report can serve as the next run's baseline; the status fails closed.
        why = (
            "the baseline report has no value for it"
            if settings.baseline_given
            else "no --baseline report was given"
        )
        # As in error_result: a waiver is never "stale" on a check that could not be judged.
        result = result.model_copy(
            update={
                "status": "error",
                "message": f"max_drop is the only threshold and cannot be judged: {why}",
                "waiver": _waiver_state(waiver, True, settings.today),
            }
        )
    return result


def error_result(
    spec: CheckSpec, message: str, waiver: Waiver | None, settings: JudgeSettings
) -> CheckResult:
    """A check that could not be evaluated: never waived, never passing."""
    waiver_state = _waiver_state(waiver, True, settings.today)
    if waiver_state is not None and waiver_state.state == "active":
        message += " (a waiver covers failures, not errors: the check must run)"
    return CheckResult(
        id=spec.id,
        kind=spec.kind,
        description=spec.description,
        status="error",
        severity=spec.severity,
        metric=spec.metric_name,
        threshold=ThresholdModel(min=spec.min, max=spec.max, max_drop=spec.max_drop),
        waiver=waiver_state,
        message=message,
    )


def overall_verdict(results: list[CheckResult]) -> tuple[str, int]:
    """The run's verdict and exit code: error beats fail beats pass (fail closed)."""
    if any(result.status == "error" for result in results):
        return "error", EXIT_ERROR
    if any(result.status == "fail" for result in results):
        return "fail", EXIT_FAIL
    return "pass", EXIT_PASS


def _waiver_state(waiver: Waiver | None, failed: bool, today: dt.date) -> WaiverState | None:
    if waiver is None:
        return None
    if today > waiver.expires:
        state = "expired"
    else:
        state = "active" if failed else "stale"
    return WaiverState(
        reason=waiver.reason, approved_by=waiver.approved_by, expires=waiver.expires, state=state
    )


def _regression(
    spec: CheckSpec,
    measurement: Measurement,
    interval: Interval | None,
    baseline: CheckResult | None,
    confidence: float | None,
) -> Regression | None:
    if (
        spec.max_drop is None
        or baseline is None
        or baseline.value is None
        or baseline.metric != spec.metric_name
    ):
        return None
    difference = measurement.value - baseline.value
    drop = -difference if spec.better_when_higher else difference
    drop_bound: float | None = None
    if confidence is not None:
        drop_bound = _drop_lower_bound(spec, measurement, interval, baseline, confidence)
    judged = drop if drop_bound is None else drop_bound
    return Regression(
        baseline_value=baseline.value,
        difference=difference,
        drop_lower_bound=drop_bound,
        max_drop=spec.max_drop,
        regressed=judged > spec.max_drop,
    )


def _drop_lower_bound(
    spec: CheckSpec,
    measurement: Measurement,
    interval: Interval | None,
    baseline: CheckResult,
    confidence: float,
) -> float | None:
    """Lower confidence bound of the worsening; None when neither run carries enough to compute one."""
    if measurement.successes is not None and baseline.successes is not None and baseline.n > 0:
        old, new = (baseline.successes, baseline.n), (measurement.successes, measurement.n)
        first, second = (old, new) if spec.better_when_higher else (new, old)
        return difference_lower_bound(*first, *second, confidence)
    if interval is not None and baseline.interval is not None and baseline.value is not None:
        half_new = (interval.upper - interval.lower) / 2
        half_old = (baseline.interval.upper - baseline.interval.lower) / 2
        if spec.better_when_higher:
            return normal_difference_lower_bound(
                baseline.value, half_old, measurement.value, half_new, confidence
            )
        return normal_difference_lower_bound(
            measurement.value, half_new, baseline.value, half_old, confidence
        )
    return None


def _samples_to_decide(spec: CheckSpec, measurement: Measurement, interval: Interval | None) -> int | None:
    """How many samples would settle a threshold the interval straddles (assuming the estimate holds)."""
    if interval is None:
        return None
    # Undecided exactly when the bound that judges fails and the other bound would pass: a min fails on
    # lower < min, a max on upper > max (the inequalities differ, so the two cases are written out).
    straddled = []
    if spec.min is not None and interval.lower < spec.min <= interval.upper:
        straddled.append(spec.min)
    if spec.max is not None and interval.lower <= spec.max < interval.upper:
        straddled.append(spec.max)
    if not straddled:
        return None
    threshold = straddled[0]
    if measurement.successes is not None:
        return samples_to_decide_proportion(measurement.value, threshold, interval.confidence)
    half_width = (interval.upper - interval.lower) / 2
    return samples_to_decide_mean(measurement.value, half_width, measurement.n, threshold)


def _message(
    spec: CheckSpec,
    measurement: Measurement,
    interval: Interval | None,
    reasons: list[str],
    waiver: WaiverState | None,
    to_decide: int | None = None,
) -> str:
    value = f"{spec.metric_name} = {measurement.value:.4g}"
    if interval is not None:
        value += (
            f" ({interval.confidence:.0%} CI [{interval.lower:.4g}, {interval.upper:.4g}], n={measurement.n})"
        )
    else:
        value += f" (n={measurement.n})"
    verdict = "; ".join(reasons) if reasons else "meets the policy"
    if measurement.incomplete and not reasons:
        verdict += f", but incomplete ({'; '.join(measurement.incomplete)}), so it is a warning, not a pass"
    text = f"{value}: {verdict}"
    if to_decide is not None:
        text += f" (the interval straddles the threshold; about {to_decide} samples would decide it)"
    if measurement.message:
        text += f". {measurement.message}"
    if waiver is not None:
        text += {
            "active": f". Waived until {waiver.expires} by {waiver.approved_by}: {waiver.reason}",
            "expired": f". The waiver expired on {waiver.expires} and no longer applies",
            "stale": ". The check passes, so its waiver is stale and can be removed",
        }[waiver.state]
    return text
