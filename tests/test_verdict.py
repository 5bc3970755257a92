"""The verdict rules: bounds vs thresholds, point values, regressions, severity, waivers and exit codes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest

from gate.measurement import Measurement
from gate.policy.model import Waiver
from gate.policy.specs import AccuracySpec, AttributionSpec, CheckSpec, GradientMaskingSpec
from gate.report.model import CheckResult
from gate.stats import clopper_pearson
from gate.verdict import (
    EXIT_ERROR,
    EXIT_FAIL,
    EXIT_PASS,
    JudgeSettings,
    error_result,
    judge,
    overall_verdict,
)

TODAY = dt.date(2026, 6, 15)
WITH_CI = JudgeSettings(confidence=0.95, today=TODAY)
POINT = JudgeSettings(confidence=None, today=TODAY)


def accuracy(**thresholds: Any) -> AccuracySpec:
    return AccuracySpec(id="acc", kind="accuracy", **thresholds)


def proportion(successes: int, n: int) -> Measurement:
    return Measurement(value=successes / n, n=n, successes=successes)


def waiver(expires: dt.date = TODAY, check: str = "acc") -> Waiver:
    return Waiver(
        check=check, reason="retraining in Q3 (TICKET-1)", approved_by="lead@example.com", expires=expires
    )


# --- min and max: bounds with a confidence level, point values without -------------------------------------


def test_min_passes_only_when_the_lower_bound_reaches_it() -> None:
    measurement = proportion(950, 1000)
    lower = clopper_pearson(950, 1000, 0.95).lower

    assert judge(accuracy(min=lower - 1e-9), measurement, WITH_CI).status == "pass"
    assert judge(accuracy(min=lower), measurement, WITH_CI).status == "pass"  # equality passes
    failing = judge(accuracy(min=0.94), measurement, WITH_CI)
    assert failing.status == "fail"  # 0.95 > 0.94, but the lower bound (~0.935) is not
    assert "lower bound 0.9346 is below min 0.94" in failing.message
    assert failing.interval is not None and failing.interval.method == "clopper-pearson"
    assert failing.interval.lower == pytest.approx(lower)


def test_max_passes_only_when_the_upper_bound_stays_under_it() -> None:
    measurement = proportion(20, 1000)
    upper = clopper_pearson(20, 1000, 0.95).upper

    assert judge(accuracy(max=upper), measurement, WITH_CI).status == "pass"
    failing = judge(accuracy(max=0.025), measurement, WITH_CI)
    assert failing.status == "fail"
    assert "upper bound" in failing.message and "is above max 0.025" in failing.message


def test_without_confidence_point_values_are_compared() -> None:
    measurement = proportion(950, 1000)
    result = judge(accuracy(min=0.94, max=0.95), measurement, POINT)
    assert result.status == "pass"
    assert result.interval is None and result.samples_to_decide is None
    assert "(n=1000)" in result.message and "CI" not in result.message
    assert judge(accuracy(min=0.951), measurement, POINT).status == "fail"
    assert "0.95 is below min 0.951" in judge(accuracy(min=0.951), measurement, POINT).message


def test_straddling_interval_reports_samples_to_decide() -> None:
    result = judge(accuracy(min=0.92), proportion(930, 1000), WITH_CI)
    assert result.status == "fail"
    assert result.interval.lower < 0.92 < result.interval.upper
    assert result.samples_to_decide is not None and result.samples_to_decide > 1000

    decided = judge(accuracy(min=0.8), proportion(930, 1000), WITH_CI)
    assert decided.status == "pass" and decided.samples_to_decide is None
    hopeless = judge(accuracy(min=0.99), proportion(930, 1000), WITH_CI)
    assert hopeless.status == "fail" and hopeless.samples_to_decide is None


def test_samples_to_decide_for_a_max_that_the_upper_bound_just_reaches_is_none() -> None:
    # upper == max passes, so nothing is undecided
    upper = clopper_pearson(20, 1000, 0.95).upper
    result = judge(accuracy(max=upper), proportion(20, 1000), WITH_CI)
    assert result.status == "pass" and result.samples_to_decide is None
    straddled = judge(accuracy(max=0.025), proportion(20, 1000), WITH_CI)
    assert straddled.samples_to_decide is not None and straddled.samples_to_decide > 1000


def test_means_are_judged_on_a_bootstrap_interval() -> None:
    spec = AttributionSpec(id="roi", kind="attribution", metric="roi_mass", min=0.5)
    values = np.random.default_rng(0).uniform(0.5, 0.7, size=200)
    result = judge(spec, Measurement.mean_of(values), WITH_CI)
    assert result.status == "pass"
    assert result.interval.method == "bootstrap-percentile"
    assert result.interval.lower < values.mean() < result.interval.upper
    assert result.metric == "roi_mass" and result.successes is None


def test_a_measurement_without_an_interval_is_compared_as_a_point() -> None:
    spec = GradientMaskingSpec(id="masking", kind="gradient_masking", epsilon=0.03)
    assert judge(spec, Measurement(value=0, n=100), WITH_CI).status == "pass"
    failing = judge(spec, Measurement(value=2, n=100), WITH_CI)
    assert failing.status == "fail" and failing.interval is None
    assert "2 is above max 0" in failing.message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_value_is_an_error_never_a_pass(value: float) -> None:
    result = judge(accuracy(max=1.0), Measurement(value=value, n=10), WITH_CI)
    assert result.status == "error"
    assert "non-finite value" in result.message
    assert overall_verdict([result]) == ("error", EXIT_ERROR)


def test_warn_severity_reports_without_blocking() -> None:
    spec = AccuracySpec(id="acc", kind="accuracy", min=0.99, severity="warn")
    result = judge(spec, proportion(900, 1000), WITH_CI)
    assert (result.status, result.severity) == ("warn", "warn")
    assert overall_verdict([result]) == ("pass", EXIT_PASS)


def test_secondary_violations_fail_the_check() -> None:
    measurement = Measurement(value=0.99, n=1000, successes=990, violations=["max_abs_diff 0.1 > 1e-4"])
    result = judge(accuracy(min=0.5), measurement, WITH_CI)
    assert result.status == "fail" and "max_abs_diff 0.1 > 1e-4" in result.message


# --- regressions against a baseline --------------------------------------------------------------------------


def baseline_of(spec: CheckSpec, measurement: Measurement, settings: JudgeSettings = WITH_CI) -> CheckResult:
    return judge(spec.model_copy(update={"max_drop": None, "min": 0.0}), measurement, settings)


def test_sampling_noise_does_not_count_as_a_regression() -> None:
    spec = accuracy(max_drop=0.0)
    baseline = baseline_of(spec, proportion(900, 1000))

    result = judge(
        spec, proportion(895, 1000), JudgeSettings(0.95, TODAY, baseline_given=True), baseline=baseline
    )

    assert result.status == "pass"
    assert result.regression is not None
    assert result.regression.difference == pytest.approx(-0.005)
    assert result.regression.drop_lower_bound < 0 < 0.005
    assert result.regression.regressed is False


def test_a_real_drop_is_a_regression() -> None:
    spec = accuracy(max_drop=0.02)
    baseline = baseline_of(spec, proportion(950, 1000))

    result = judge(spec, proportion(800, 1000), WITH_CI, baseline=baseline)

    assert result.status == "fail"
    assert result.regression.regressed is True
    assert result.regression.drop_lower_bound > 0.02
    assert "dropped by more than max_drop 0.02" in result.message


def test_a_drop_within_max_drop_passes_even_when_it_is_certain() -> None:
    spec = accuracy(max_drop=0.2)
    baseline = baseline_of(spec, proportion(950, 1000))
    result = judge(spec, proportion(800, 1000), WITH_CI, baseline=baseline)
    assert result.status == "pass" and result.regression.regressed is False


def test_without_confidence_the_point_drop_is_judged() -> None:
    spec = accuracy(max_drop=0.0)
    baseline = baseline_of(spec, proportion(900, 1000), POINT)
    result = judge(spec, proportion(895, 1000), POINT, baseline=baseline)
    assert result.regression.drop_lower_bound is None
    assert result.regression.regressed is True and result.status == "fail"


def test_for_lower_is_better_metrics_an_increase_is_the_drop() -> None:
    spec = AttributionSpec(id="del", kind="attribution", metric="deletion_auc", max_drop=0.01)
    rng = np.random.default_rng(0)
    baseline = baseline_of(spec, Measurement.mean_of(rng.normal(0.20, 0.02, size=400)))

    worse = judge(spec, Measurement.mean_of(rng.normal(0.30, 0.02, size=400)), WITH_CI, baseline=baseline)
    better = judge(spec, Measurement.mean_of(rng.normal(0.10, 0.02, size=400)), WITH_CI, baseline=baseline)

    assert worse.regression.regressed is True and worse.status == "fail"
    assert worse.regression.difference == pytest.approx(0.1, abs=0.01)
    assert better.regression.regressed is False and better.status == "pass"


def test_max_drop_only_check_without_a_baseline_is_an_error() -> None:
    result = judge(accuracy(max_drop=0.01), proportion(900, 1000), WITH_CI)
    assert result.status == "error"
    assert (
        "max_drop is the only threshold and cannot be judged: no --baseline report was given"
        in result.message
    )
    assert result.value == pytest.approx(0.9)  # kept, so this report can be the next baseline
    assert overall_verdict([result]) == ("error", EXIT_ERROR)


def test_max_drop_only_check_missing_from_the_baseline_is_an_error() -> None:
    settings = JudgeSettings(confidence=0.95, today=TODAY, baseline_given=True)
    result = judge(accuracy(max_drop=0.01), proportion(900, 1000), settings, baseline=None)
    assert result.status == "error" and "the baseline report has no value for it" in result.message


def test_a_baseline_of_another_metric_is_not_compared() -> None:
    spec = accuracy(max_drop=0.0, min=0.5)
    other = baseline_of(spec, proportion(990, 1000)).model_copy(update={"metric": "robust_accuracy"})
    result = judge(spec, proportion(500 + 400, 1000), WITH_CI, baseline=other)
    assert result.regression is None and result.status == "pass"


# --- waivers -------------------------------------------------------------------------------------------------


def test_a_waived_failing_check_does_not_block() -> None:
    result = judge(accuracy(min=0.99), proportion(900, 1000), WITH_CI, waiver=waiver(TODAY))
    assert result.status == "waived"
    assert result.waiver.state == "active"
    assert "Waived until 2026-06-15 by lead@example.com: retraining in Q3 (TICKET-1)" in result.message
    assert overall_verdict([result]) == ("pass", EXIT_PASS)


def test_an_expired_waiver_no_longer_applies_and_says_so() -> None:
    result = judge(
        accuracy(min=0.99), proportion(900, 1000), WITH_CI, waiver=waiver(TODAY - dt.timedelta(days=1))
    )
    assert result.status == "fail"
    assert result.waiver.state == "expired"
    assert "The waiver expired on 2026-06-14 and no longer applies" in result.message
    assert overall_verdict([result]) == ("fail", EXIT_FAIL)


def test_a_waiver_on_a_passing_check_is_stale() -> None:
    result = judge(accuracy(min=0.5), proportion(900, 1000), WITH_CI, waiver=waiver())
    assert (result.status, result.waiver.state) == ("pass", "stale")
    assert "waiver is stale and can be removed" in result.message


def test_a_waiver_never_turns_an_error_into_a_pass() -> None:
    spec = accuracy(min=0.5)
    errored = judge(spec, Measurement(value=float("nan"), n=10), WITH_CI, waiver=waiver())
    assert errored.status == "error"
    assert "a waiver covers failures, not errors" in errored.message

    direct = error_result(spec, "the check timed out", waiver(), WITH_CI)
    assert direct.status == "error" and direct.value is None
    assert overall_verdict([direct]) == ("error", EXIT_ERROR)


def test_a_waived_warn_check_is_waived() -> None:
    spec = AccuracySpec(id="acc", kind="accuracy", min=0.99, severity="warn")
    assert judge(spec, proportion(900, 1000), WITH_CI, waiver=waiver()).status == "waived"


# --- the run's verdict ---------------------------------------------------------------------------------------


def result_with(status: str) -> CheckResult:
    return CheckResult(
        id=status,
        kind="accuracy",
        status=status,
        severity="block",
        metric="accuracy",
        threshold={},
        message="",
    )


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], ("pass", EXIT_PASS)),
        (["pass", "warn", "waived"], ("pass", EXIT_PASS)),
        (["pass", "fail", "warn"], ("fail", EXIT_FAIL)),
        (["fail", "error", "pass"], ("error", EXIT_ERROR)),
        (["error"], ("error", EXIT_ERROR)),
    ],
)
def test_overall_verdict_error_beats_fail_beats_pass(statuses: list[str], expected: tuple[str, int]) -> None:
    assert overall_verdict([result_with(status) for status in statuses]) == expected
    assert (EXIT_PASS, EXIT_FAIL, EXIT_ERROR) == (0, 1, 3)


def test_a_waiver_on_an_unjudgeable_max_drop_check_is_not_called_stale() -> None:
    result = judge(accuracy(max_drop=0.01), proportion(900, 1000), WITH_CI, waiver=waiver())
    assert result.status == "error"
    assert result.waiver.state == "active"
