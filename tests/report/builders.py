"""A report envelope for format tests: fixed, plausible metadata around the checks a test cares about."""

from __future__ import annotations

import datetime as dt

from gate import __version__
from gate.report.model import CheckResult, DataInfo, Environment, ModelInfo, PolicyInfo, Report, Summary

EXIT_CODES = {"pass": 0, "fail": 1, "error": 3}


def report_around(
    checks: list[CheckResult],
    *,
    verdict: str = "fail",
    message: str = "",
    policy_file: str = "policies/release.yaml",
    duration_s: float = 1.0,
    summary: Summary | None = None,
) -> Report:
    return Report(
        verdict=verdict,
        exit_code=EXIT_CODES[verdict],
        message=message,
        policy=PolicyInfo(name="release", files=[policy_file], sha256="ab" * 32),
        model=ModelInfo(source="model.onnx", sha256="cd" * 32),
        data=DataInfo(source="digits.npz", n=500),
        environment=Environment(
            gate=__version__,
            python="3.11",
            torch="2.4",
            onnx="1.16",
            onnxruntime="1.18",
            platform="linux",
            device="cpu",
        ),
        seed=0,
        confidence=0.95,
        started_at=dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc),
        duration_s=duration_s,
        summary=summary or Summary(),
        checks=checks,
    )
