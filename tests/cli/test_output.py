"""What gate check prints: the summary table, --format json / --json, --quiet, colour rules, and shell
completion of --policy (gate/console.py, gate/cli)."""

from __future__ import annotations

import json

import click
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


def test_progress_off_a_terminal_is_one_plain_line_per_event(run):
    result = run("")
    lines = result.stderr.splitlines()
    announced = [line for line in lines if line.startswith("check ")]
    assert announced == [
        "check 1 of 3: clean-accuracy (accuracy)",
        "check 2 of 3: sanity (model_sanity)",
        "check 3 of 3: strict-accuracy (accuracy)",
    ]
    loading = lines.index("  loading the ONNX model …")  # said before it starts, not only after
    assert loading < lines.index(next(line for line in lines if "loading the ONNX model: 1/1" in line))
    assert loading < lines.index(announced[0])
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    finished = [line for line in lines if line.startswith("  ") and not line.endswith("…")]
    assert finished and all(" in " in line and line.endswith(" s") for line in finished)


def test_quiet_and_json_runs_announce_nothing(run):
    for flag in ("--quiet", "--json"):
        assert "check 1 of 3" not in run("", flag).stderr


def test_the_bar_shows_elapsed_time_and_an_eta(monkeypatch):
    import io

    now = [0.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: now[0])
    stream = io.StringIO()
    progress = console.Progress(enabled=True, stream=stream)
    with progress.task("attacking", 4) as task:
        now[0] = 10.0
        task.advance(1)  # 1 of 4 after 10 s: 30 s left
        now[0] = 20.0
        task.advance(1)  # 2 of 4 after 20 s: 20 s left
    frames = [click.unstyle(frame) for frame in stream.getvalue().split("\r")]
    first = next(frame for frame in frames if "1/4" in frame)
    second = next(frame for frame in frames if "2/4" in frame)
    assert "0:00:10" in first and "ETA 30.0 s" in first, first
    assert "0:00:20" in second and "ETA 20.0 s" in second, second
    assert "\n" in stream.getvalue()  # the finished bar stays on its own line


def test_durations_read_as_seconds_then_minutes():
    assert [console._duration(s) for s in (4.24, 59.9, 125, 3725)] == ["4.2 s", "59.9 s", "2:05", "1:02:05"]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("gate check --policy builtin:s", ["plain,builtin:strict"]),
        ("gate check --data da", ["file,da"]),
        ("gate check --model ", ["file,"]),
    ],
)
def test_the_documented_bash_completion_recipe_completes_builtins_and_paths(words, expected):
    # what `eval "$(_GATE_COMPLETE=bash_source gate)"` makes bash ask gate on each TAB
    import os
    import subprocess
    import sys

    environment = {**os.environ, "_GATE_COMPLETE": "bash_complete", "COMP_WORDS": words,
                   "COMP_CWORD": str(len(words.split(" ")) - 1)}  # fmt: skip
    script = "import sys; from gate.cli import main; sys.exit(main(prog_name='gate'))"
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected


def test_the_bar_moves_within_a_batch_with_each_model_call() -> None:
    """A long batch (an attack's steps) is not a frozen bar: every model call pulses it."""
    import io

    from gate.console import Progress

    stream = io.StringIO()
    progress = Progress(enabled=True, stream=stream)
    with progress.task("pgd", 10) as task:
        for _ in range(3):
            task.pulse()
            task._last_draw = 0.0  # no throttling in the test
    assert "3 model calls" in stream.getvalue()
