"""Running one policy through the library (no CLI) and reading back one check's result."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gate.model import ModelSpec
from gate.report.model import CheckResult, Report
from gate.runner import RunOptions, run_gate


@pytest.fixture()
def gate_run(tmp_path: Path):
    """``gate_run(policy_yaml, model_path, data_path) -> Report``; the policy text is dedented."""

    def run(policy: str, model: Path, data: Path, **options) -> Report:
        policy_path = tmp_path / "policy.yaml"
        policy_path.write_text(textwrap.dedent(policy).lstrip(), encoding="utf-8")
        return run_gate(
            RunOptions(
                policy=str(policy_path),
                model=ModelSpec(source=str(model), device="cpu"),
                data=str(data),
                report_dir=tmp_path / "report",
                **options,
            )
        )

    return run


def only_check(report: Report) -> CheckResult:
    (check,) = report.checks
    return check
