"""What gate check prints: the summary table, --format json / --json, --quiet, colour rules, and shell
completion of --policy (gate/console.py, gate/cli)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import write_policy

from gate import console
from gate.cli import main
from gate.report.model import Report

POLICY = """
    version: 1
    name: output
    checks:
      - id: clean-accuracy
        kind: accuracy
        min: 0.9
      - id: sanity
        kind: model_sanity
      - id: strict-accuracy
        kind: accuracy
        min: 0.999
        severity: warn
    """


@pytest.fixture()
def run(tmp_path, digits_cnn_onnx, digits_npz):
    policy = write_policy(tmp_path / "policy.yaml", POLICY)

    def invoke(*extra: str, env: dict | None = None, color: bool = False):
        arguments = [*extra[:1], "check", "-p", str(policy), "-m", str(digits_cnn_onnx), "-d", str(digits_npz),
                     "-o", str(tmp_path / "out"), "--device", "cpu", *extra[1:]]  # fmt: skip
        return CliRunner().invoke(
            main, [a for a in arguments if a], env=env, color=color, catch_exceptions=False
        )

    return invoke


def test_the_table_has_a_header_values_intervals_thresholds_and_integer_counts(run):
    result = run("")
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["STATUS", "CHECK", "METRIC", "VALUE", "INTERVAL", "THRESHOLD"]
    accuracy = next(line for line in lines if "clean-accuracy" in line)
    assert ">= 0.9" in accuracy and "[0." in accuracy
    sanity = next(line for line in lines if " sanity " in line)
    assert sanity.split()[3] == "0" and "<= 0" in sanity  # a count, not 0.0000
    warned = lines.index(next(line for line in lines if "strict-accuracy" in line))
    reason = lines[warned + 1 :]
    assert reason[0].startswith(" " * 9) and "below min 0.999" in " ".join(reason[:3])


def test_messages_wrap_at_word_boundaries():
    check = type("C", (), {"id": "c", "status": "fail", "metric": "accuracy", "value": 0.5, "interval": None,
                           "threshold": None, "message": "word " * 60})  # fmt: skip
    report = type("R", (), {"policy": type("P", (), {"name": "p"}), "data": type("D", (), {"n": 1}),
                            "environment": type("E", (), {"device": "cpu"}), "checks": [check], "verdict": "fail",
                            "message": "m"})  # fmt: skip
    table = console.summary_table(report, "out", width=60)
    reason = [line for line in table.splitlines() if line.startswith(" " * 9)]
    assert len(reason) > 3 and all(len(line) <= 60 and line.endswith("word") for line in reason)


@pytest.mark.parametrize("flag", ["--json", "--format=json"])
def test_json_output_is_the_report_for_scripts(run, flag):
    result = run("", flag)
    report = Report.model_validate(json.loads(result.stdout))
    assert report.exit_code == result.exit_code and report.checks[0].id == "clean-accuracy"
    assert "STATUS" not in result.stdout


def test_quiet_prints_nothing_but_keeps_the_exit_code(run):
    result = run("", "--quiet")
    assert result.stdout == "" and result.exit_code == 0


@pytest.mark.parametrize(("option", "env"), [("--no-color", None), ("", {"NO_COLOR": "1"})])
def test_no_color_and_NO_COLOR_print_plain_text(run, option, env, monkeypatch):
    monkeypatch.setattr(console, "_colour_off", False)
    result = run(option, env=env, color=True)
    assert "\x1b[" not in result.output
    monkeypatch.setattr(console, "_colour_off", False)
    assert "\x1b[" in run("", color=True).output  # colour where it was asked for


def test_policy_completes_builtin_names():
    from gate.cli import complete_policy

    assert [item.value for item in complete_policy(None, None, "builtin:s")] == ["builtin:strict"]
    offered = complete_policy(None, None, "")
    assert "builtin:baseline" in [item.value for item in offered] and offered[-1].type == "file"
    assert [item.type for item in complete_policy(None, None, "policies/")] == ["file"]
