"""End to end: ``gate check`` on a digits CNN trained in the test, through the CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_policy

from gate.cli import main
from gate.report.model import Report


def run_check(*args: str | Path) -> tuple[int, str, Path]:
    runner = CliRunner()
    report_dir = next((Path(b) for a, b in itertools.pairwise(args) if a == "--report-dir"), None)
    result = runner.invoke(main, ["check", *map(str, args)], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, result.output, report_dir or Path("gate-report")


def load_report(report_dir: Path) -> Report:
    return Report.model_validate_json((report_dir / "report.json").read_text())


ACCURACY_POLICY = """
    version: 1
    name: digits
    checks:
      - id: clean-accuracy
        kind: accuracy
        min: {min}
        severity: {severity}
    """


@pytest.fixture()
def policy_factory(tmp_path: Path):
    def make(min_value: float = 0.9, severity: str = "block", extra: str = "") -> Path:
        body = ACCURACY_POLICY.format(min=min_value, severity=severity) + extra
        return write_policy(tmp_path / f"policy-{min_value}-{severity}.yaml", body)

    return make


def test_pass_writes_every_report(tmp_path, digits_cnn_onnx, digits_npz, policy_factory):
    report_dir = tmp_path / "out"
    code, output, _ = run_check(
        "--policy",
        policy_factory(0.9),
        "--model",
        digits_cnn_onnx,
        "--data",
        digits_npz,
        "--report-dir",
        report_dir,
    )
    assert code == 0, output
    assert "PASS" in output and "clean-accuracy" in output
    report = load_report(report_dir)
    check = report.checks[0]
    assert report.verdict == "pass" and check.status == "pass"
    assert check.n == 297 and check.successes is not None
    assert (
        check.interval is not None
        and check.interval.lower >= 0.9
        and check.interval.method == "clopper-pearson"
    )
    assert (
        len(report.model.sha256 or "") == 64
        and len(report.data.sha256) == 64
        and len(report.policy.sha256) == 64
    )
    assert report.environment.torch and report.environment.onnxruntime
    jsonschema.validate(json.loads((report_dir / "report.json").read_text()), Report.model_json_schema())
    assert (report_dir / "junit.xml").read_text().count("<testcase") == 1
    assert "## gate: ✅ PASS" in (report_dir / "summary.md").read_text()


def test_lower_bound_below_min_fails_with_exit_1(tmp_path, digits_cnn_onnx, digits_npz, policy_factory):
    # The point estimate (~0.99) clears 0.985, but with 297 samples the lower bound does not.
    code, output, report_dir = run_check(
        "--policy",
        policy_factory(0.985),
        "--model",
        digits_cnn_onnx,
        "--data",
        digits_npz,
        "--report-dir",
        tmp_path / "out",
    )
    assert code == 1, output
    check = load_report(report_dir).checks[0]
    assert check.status == "fail" and check.value > 0.985
    assert check.samples_to_decide is not None and check.samples_to_decide > 297


def test_warn_severity_does_not_block(tmp_path, digits_cnn_onnx, digits_npz, policy_factory):
    code, _, report_dir = run_check(
        "--policy",
        policy_factory(0.999, "warn"),
        "--model",
        digits_cnn_onnx,
        "--data",
        digits_npz,
        "--report-dir",
        tmp_path / "out",
    )
    assert code == 0
    assert load_report(report_dir).checks[0].status == "warn"


def test_active_waiver_unblocks_and_expired_one_does_not(
    tmp_path, digits_cnn_onnx, digits_npz, policy_factory
):
    waiver = """
    waivers:
      - check: clean-accuracy
        reason: retraining scheduled
        approved_by: safety@example.com
        expires: {expires}
    """
    for expires, expected_code, state in (("2999-01-01", 0, "active"), ("2001-01-01", 1, "expired")):
        policy = write_policy(
            tmp_path / f"waived-{state}.yaml",
            ACCURACY_POLICY.format(min=0.999, severity="block") + waiver.format(expires=expires),
        )
        code, _, report_dir = run_check(
            "--policy",
            policy,
            "--model",
            digits_cnn_onnx,
            "--data",
            digits_npz,
            "--report-dir",
            tmp_path / state,
        )
        report = load_report(report_dir)
        assert code == expected_code
        assert report.checks[0].waiver is not None and report.checks[0].waiver.state == state
        assert report.checks[0].status == ("waived" if state == "active" else "fail")


def test_check_that_cannot_finish_is_error_exit_3_and_others_still_reported(
    tmp_path, digits_cnn_onnx, digits_npz, policy_factory
):
    extra = """
      - id: parity
        kind: export_parity
        min: 0.5
        timeout: 1e-9
    """
    code, output, report_dir = run_check(
        "--policy",
        policy_factory(0.5, extra=extra),
        "--model",
        digits_cnn_onnx,
        "--data",
        digits_npz,
        "--report-dir",
        tmp_path / "out",
    )
    assert code == 3, output
    report = load_report(report_dir)
    statuses = {check.id: check.status for check in report.checks}
    assert statuses == {"clean-accuracy": "pass", "parity": "error"}
    assert report.verdict == "error" and "timed out" in report.checks[1].message


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"--data": "missing.npz"}, "missing.npz"),
        ({"--model": "missing.onnx"}, "missing.onnx"),
        ({"--policy": "missing.yaml"}, "missing.yaml"),
        ({"--policy": "builtin:nope"}, "unknown built-in policy"),
    ],
)
def test_bad_input_is_exit_2_with_a_message(
    tmp_path, digits_cnn_onnx, digits_npz, policy_factory, change, needle
):
    args = {"--policy": str(policy_factory()), "--model": str(digits_cnn_onnx), "--data": str(digits_npz)}
    args.update(
        {
            key: str(tmp_path / value) if value.endswith((".npz", ".onnx", ".yaml")) else value
            for key, value in change.items()
        }
    )
    flat = [item for pair in args.items() for item in pair]
    code, output, _ = run_check(*flat, "--report-dir", tmp_path / "out")
    assert code == 2
    assert needle in output


def test_labels_beyond_model_outputs_are_refused(tmp_path, digits_cnn_onnx, digits_split, policy_factory):
    data = tmp_path / "bad-labels.npz"
    np.savez(data, x=digits_split["x_test"][:20], y=np.full(20, 12, dtype=np.int64))
    code, output, _ = run_check(
        "--policy",
        policy_factory(),
        "--model",
        digits_cnn_onnx,
        "--data",
        data,
        "--report-dir",
        tmp_path / "out",
    )
    assert code == 2 and "10 outputs" in output


def test_regression_against_baseline_fails_a_real_drop_not_noise(
    tmp_path, digits_cnn_onnx, digits_split, policy_factory
):
    extra_drop = """
      - id: accuracy-regression
        kind: accuracy
        max_drop: 0.02
    """
    policy = policy_factory(0.0, extra=extra_drop)
    good = tmp_path / "good.npz"
    np.savez(good, x=digits_split["x_test"], y=digits_split["y_test"])
    code, output, baseline_dir = run_check(
        "--policy", policy, "--model", digits_cnn_onnx, "--data", good, "--report-dir", tmp_path / "base"
    )
    # Without a baseline the regression cannot be judged: fail closed, but keep the value for next time.
    assert code == 3 and "no --baseline report was given" in output
    assert load_report(baseline_dir).checks[1].value is not None
    # Same model, same data: no drop at all -> passes against its own baseline.
    code, _, same_dir = run_check(
        "--policy",
        policy,
        "--model",
        digits_cnn_onnx,
        "--data",
        good,
        "--report-dir",
        tmp_path / "same",
        "--baseline",
        baseline_dir / "report.json",
    )
    assert code == 0
    assert load_report(same_dir).checks[1].regression.regressed is False
    # Corrupt a third of the labels: accuracy falls by ~0.3, far beyond max_drop and its noise.
    y = digits_split["y_test"].copy()
    y[::3] = (y[::3] + 1) % 10
    worse = tmp_path / "worse.npz"
    np.savez(worse, x=digits_split["x_test"], y=y)
    code, _, worse_dir = run_check(
        "--policy",
        policy,
        "--model",
        digits_cnn_onnx,
        "--data",
        worse,
        "--report-dir",
        tmp_path / "worse",
        "--baseline",
        baseline_dir / "report.json",
    )
    assert code == 1
    regression = load_report(worse_dir).checks[1].regression
    assert regression.regressed and regression.difference < -0.25


def test_same_seed_same_results(tmp_path, digits_cnn_onnx, digits_npz, policy_factory):
    reports = []
    for name in ("a", "b"):
        _, _, report_dir = run_check(
            "--policy",
            policy_factory(0.5),
            "--model",
            digits_cnn_onnx,
            "--data",
            digits_npz,
            "--report-dir",
            tmp_path / name,
            "--samples",
            "100",
            "--seed",
            "7",
        )
        reports.append(load_report(report_dir))
    first, second = ([c.model_dump(exclude={"duration_s"}) for c in r.checks] for r in reports)
    assert first == second


def test_what_gate_did_to_the_data_is_in_the_report(tmp_path, digits_cnn_onnx, digits_split, policy_factory):
    data = tmp_path / "with-extras.npz"
    np.savez(data, x=digits_split["x_test"], y=digits_split["y_test"], class_names=np.array(["zero"] * 10))
    report_dir = tmp_path / "out"
    code, output, _ = run_check(
        "--policy", policy_factory(0.5), "--model", digits_cnn_onnx, "--data", data, "--report-dir", report_dir
    )  # fmt: skip
    assert code == 0, output
    notes = load_report(report_dir).data.notes
    assert notes and any("class_names" in note for note in notes)


def test_a_second_check_of_the_same_factory_model_skips_the_export(
    tmp_path, digits_cnn, digits_npz, policy_factory, monkeypatch
):
    from safetensors.torch import save_file

    from gate.model.export_cache import CACHE_ENV

    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "model"))
    weights = tmp_path / "cnn.safetensors"
    save_file({k: v.contiguous() for k, v in digits_cnn.state_dict().items()}, str(weights))
    exported = []
    from gate.model import under_test

    real_export = under_test.export_to_onnx
    monkeypatch.setattr(
        under_test, "export_to_onnx", lambda *a, **k: exported.append(a[2]) or real_export(*a, **k)
    )
    args = ["--model", "model_factories:make_cnn", "--weights", weights, "--data", digits_npz]
    reports = []
    for policy, report_dir in ((policy_factory(0.5), tmp_path / "r"), (policy_factory(0.6), tmp_path / "r")):
        code, output, _ = run_check("--policy", policy, *args, "--report-dir", report_dir)
        assert code == 0, output
        reports.append(load_report(report_dir))
    assert len(exported) == 1
    first, second = (report.model.export for report in reports)
    assert first.cached is None and first.exporter == "dynamo" and first.seconds > 0
    assert second.cached == "the report folder" and second.opset == first.opset
    assert reports[0].model.sha256 == reports[1].model.sha256
    assert reports[0].checks[0].value == reports[1].checks[0].value
