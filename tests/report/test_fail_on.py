"""The action's fail-on: which checks may fail the job (gate/report/fail_on.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_annotations import check, report_with

from gate.report.fail_on import decide, main, parse_fail_on
from gate.report.formats import JsonFormat


def sample():
    return report_with([
        check("pass", id="clean"), check("fail", id="pgd"), check("warn", id="blur", severity="warn"),
        check("waived", id="jpeg"), check("error", id="masking"),
    ])  # fmt: skip


@pytest.mark.parametrize(
    ("fail_on", "exit_code", "fails", "reason"),
    [
        ("fail", 1, True, "gate exited 1"),
        ("fail", 0, False, "gate exited 0"),
        ("never", 3, False, "fail-on is never"),
        ("clean", 1, False, "the 1 checks selected by fail-on passed or are waived"),
        ("clean,jpeg", 1, False, "the 2 checks selected"),
        ("pgd", 1, True, "pgd (fail)"),
        ("masking", 3, True, "masking (error)"),
        ("warn", 1, True, "blur (warn)"),
        ("block", 1, True, "pgd (fail), masking (error)"),
        ("clean, typo", 1, True, "fail-on names typo, which the report has no check for"),
    ],
)
def test_decide(fail_on, exit_code, fails, reason):
    decision = decide(sample(), fail_on, exit_code)
    assert decision.fails is fails and reason in decision.reason


def test_no_report_or_invalid_input_always_fails_a_list():
    assert decide(None, "clean", 2).fails and decide(sample(), "clean", 2).fails


def test_an_empty_list_is_an_error():
    with pytest.raises(ValueError, match="fail-on is empty"):
        parse_fail_on(" , ")


def test_main_exit_codes(tmp_path: Path, capsys):
    path = tmp_path / "report.json"
    path.write_text(JsonFormat().render(sample()))
    assert main([str(path), "clean", "1"]) == 0
    assert main([str(path), "pgd", "1"]) == 1
    assert "the job fails" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.json"), "clean", "2"]) == 1
    assert main([str(path), ",", "1"]) == 2
