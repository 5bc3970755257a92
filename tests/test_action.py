"""action.yml: valid action metadata, and its `run:` steps behave as a runner would execute them.

The runner is imitated closely enough to matter: each step runs with ``bash --noprofile --norc -eo
pipefail`` (GitHub's ``shell: bash``), gets its own ``GITHUB_OUTPUT`` file, ``${{ }}`` expressions in
``env`` and ``if`` are evaluated, and a step without ``if`` runs only while every earlier step succeeded.
``uses:`` steps are recorded, not run; ``gate`` and ``pip`` are fakes on ``PATH``.
"""

from __future__ import annotations

import ast
import datetime as dt
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from gate.report.formats import JsonFormat, MarkdownFormat
from gate.report.model import (
    CheckResult,
    DataInfo,
    Environment,
    IntervalModel,
    Location,
    ModelInfo,
    PolicyInfo,
    Report,
    Summary,
    ThresholdModel,
)

ACTION = Path(__file__).resolve().parent.parent / "action.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
CONTEXT = re.compile(r"\b(inputs|github|steps)\.([A-Za-z0-9_.-]+)")


def load_action() -> dict[str, Any]:
    return YAML(typ="safe", pure=True).load(ACTION.read_text(encoding="utf-8"))


@dataclass
class Run:
    """The outcome of running the action's steps: what a workflow would see."""

    outcome: str
    step_outcomes: dict[str, str]
    outputs: dict[str, str]
    stdout: str
    summary: str
    uses: list[dict[str, Any]] = field(default_factory=list)


class Runner:
    """Just enough of the Actions runner for a composite action's bash steps."""

    def __init__(self, workspace: Path, inputs: dict[str, str], machine_environment: dict[str, str]) -> None:
        self.action = load_action()
        self.workspace = workspace
        defaults = {name: str(spec.get("default", "")) for name, spec in self.action["inputs"].items()}
        self.inputs = {**defaults, **inputs}
        self.machine_environment = machine_environment
        self.steps: dict[str, dict[str, Any]] = {}
        self.summary = workspace / "step-summary.md"
        self.summary.write_text("")

    def value(self, reference: str) -> Any:
        context, _, rest = reference.partition(".")
        if context == "inputs":
            return self.inputs[rest]
        if context == "github":
            return {"action_path": str(ACTION.parent), "workspace": str(self.workspace)}[rest]
        step_id, _, what = rest.partition(".")
        step = self.steps.get(step_id, {"outputs": {}, "outcome": ""})
        return (
            step["outputs"].get(what.removeprefix("outputs."), "")
            if what.startswith("outputs.")
            else step[what]
        )

    def evaluate(self, expression: str, succeeded: bool) -> Any:
        python = CONTEXT.sub(lambda match: repr(self.value(match.group(0))), expression)
        python = python.replace("&&", " and ").replace("||", " or ")
        python = python.replace("always()", "True").replace("success()", repr(succeeded))
        return eval(python, {"__builtins__": {}}, {})

    def substitute(self, text: str) -> str:
        return EXPRESSION.sub(lambda match: str(self.evaluate(match.group(1), True)), str(text))

    def run(self) -> Run:
        succeeded, stdout, uses = True, [], []
        for index, step in enumerate(self.action["runs"]["steps"]):
            step_id = step.get("id", f"step{index}")
            condition = step.get("if")
            if condition is not None:
                expression = EXPRESSION.fullmatch(condition.strip())
                should_run = self.evaluate(expression.group(1) if expression else condition, succeeded)
            else:
                should_run = succeeded
            if not should_run:
                self.steps[step_id] = {"outputs": {}, "outcome": "skipped"}
                continue
            if "uses" in step:
                with_ = {key: self.substitute(value) for key, value in step.get("with", {}).items()}
                uses.append({"uses": step["uses"], "with": with_})
                self.steps[step_id] = {"outputs": {}, "outcome": "success"}
                continue
            outcome, output = self._bash(step, step_id)
            stdout.append(output)
            succeeded = succeeded and outcome == "success"
        final_outputs = {
            name: self.substitute(spec["value"]) for name, spec in self.action["outputs"].items()
        }
        return Run(
            outcome="success" if succeeded else "failure",
            step_outcomes={step_id: step["outcome"] for step_id, step in self.steps.items()},
            outputs=final_outputs,
            stdout="".join(stdout),
            summary=self.summary.read_text(),
            uses=uses,
        )

    def _bash(self, step: dict[str, Any], step_id: str) -> tuple[str, str]:
        output_file = self.workspace / f"output-{step_id}.txt"
        output_file.write_text("")
        script = self.workspace / f"step-{step_id}.sh"
        script.write_text(step["run"])
        environment = {
            **self.machine_environment,
            "HOME": str(self.workspace),
            "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_ACTION_PATH": str(ACTION.parent),
            "GITHUB_OUTPUT": str(output_file),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            **{key: self.substitute(value) for key, value in step.get("env", {}).items()},
        }
        assert step["shell"] == "bash"
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
            cwd=self.workspace,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        outputs = dict(line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line)
        outcome = "success" if result.returncode == 0 else "failure"
        self.steps[step_id] = {"outputs": outputs, "outcome": outcome}
        return outcome, result.stdout + result.stderr


def sample_report(workspace: Path) -> Report:
    policy = workspace / "policies" / "release.yaml"
    common = {
        "severity": "block",
        "n": 500,
        "interval": IntervalModel(lower=0.38, upper=0.46, confidence=0.95, method="clopper-pearson"),
    }
    checks = [
        CheckResult(
            id="clean-accuracy",
            kind="accuracy",
            status="pass",
            metric="accuracy",
            value=0.97,
            threshold=ThresholdModel(min=0.9),
            message="ok",
            location=Location(path=str(policy), line=5, column=5),
            **common,
        ),
        CheckResult(
            id="pgd-8",
            kind="adversarial",
            status="fail",
            metric="robust_accuracy",
            value=0.42,
            threshold=ThresholdModel(min=0.5),
            message="robust accuracy is below min 0.5,\nsee report.html",
            location=Location(path=str(policy), line=8, column=5),
            **common,
        ),
        CheckResult(
            id="blur",
            kind="corruption",
            status="warn",
            metric="corrupted_accuracy",
            value=0.42,
            threshold=ThresholdModel(min=0.7),
            message="corrupted accuracy below min",
            location=Location(path=str(policy), line=14, column=5),
            **{**common, "severity": "warn"},
        ),
    ]
    return Report(
        verdict="fail",
        exit_code=1,
        message="1 blocking check failed",
        policy=PolicyInfo(name="release", files=[str(policy)], sha256="ab" * 32),
        model=ModelInfo(source="model.onnx", sha256="cd" * 32),
        data=DataInfo(source="data.npz", n=500),
        environment=Environment(
            gate="0.1.0", python="3.11", torch="2", onnx="1", onnxruntime="1", platform="linux", device="cpu"
        ),
        seed=0,
        confidence=0.95,
        started_at=dt.datetime(2026, 11, 27, tzinfo=dt.timezone.utc),
        duration_s=3.0,
        summary=Summary(passed=1, failed=1, warned=1),
        checks=checks,
    )


FAKE_GATE = """\
#!{python}
# A stand-in for gate: records its arguments, copies a prepared report folder, exits with a chosen code.
import os, shutil, sys
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write("gate " + repr(sys.argv[1:]) + "\\n")
report_dir = sys.argv[sys.argv.index("--report-dir") + 1]
if os.environ.get("FAKE_REPORT"):
    shutil.copytree(os.environ["FAKE_REPORT"], report_dir, dirs_exist_ok=True)
sys.stderr.write(os.environ.get("FAKE_STDERR", ""))
sys.exit(int(os.environ["FAKE_EXIT"]))
"""

FAKE_PIP = """\
#!/bin/sh
echo "pip $*" >> "$FAKE_LOG"
"""

# The interpreter running the tests, by its own path: a symlink to a virtual environment's python runs
# the base interpreter without the environment's packages, since Python finds pyvenv.cfg beside the
# name it was started by.
PYTHON = """\
#!/bin/sh
exec "{python}" "$@"
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    report = sample_report(tmp_path / "work")
    (prepared / "report.json").write_text(JsonFormat().render(report))
    (prepared / "summary.md").write_text(MarkdownFormat().render(report))
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def run_action(
    workspace: Path, exit_code: int = 1, report: bool = True, stderr: str = "", **inputs: str
) -> tuple[Run, str]:
    """Run the action with fake ``gate`` and ``pip`` first on PATH; returns the run and the fakes' calls."""
    bin_dir = workspace.parent / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "gate").write_text(FAKE_GATE.format(python=sys.executable))
    (bin_dir / "pip").write_text(FAKE_PIP)
    (bin_dir / "python").write_text(PYTHON.format(python=sys.executable))
    for tool in ("gate", "pip", "python"):
        (bin_dir / tool).chmod(0o755)
    log = workspace.parent / "calls.log"
    log.write_text("")
    machine = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_LOG": str(log),
        "FAKE_EXIT": str(exit_code),
        "FAKE_REPORT": str(workspace.parent / "prepared") if report else "",
        "FAKE_STDERR": stderr,
    }
    inputs = {"policy": "policies/release.yaml", "data": "data.npz", **inputs}
    return Runner(workspace, inputs, machine).run(), log.read_text()


def test_a_failing_gate_fails_the_action_with_summary_outputs_and_annotations(workspace: Path) -> None:
    run, calls = run_action(workspace, model="model.onnx")
    assert run.outcome == "failure"
    assert run.step_outcomes["check"] == "success" and run.step_outcomes["report"] == "success"
    assert run.outputs == {"verdict": "fail", "report-dir": "gate-report", "exit-code": "1"}
    assert "## gate: ❌ FAIL" in run.summary
    assert (
        "::error file=policies/release.yaml,line=8,col=5,title=gate fail%3A pgd-8 (adversarial)::"
        "pgd-8 (fail): robust accuracy is below min 0.5,%0Asee report.html" in run.stdout
    )
    assert (
        "::warning file=policies/release.yaml,line=14,col=5,title=gate warn%3A blur (corruption)::"
        in run.stdout
    )
    assert "clean-accuracy" not in run.stdout
    assert [use["uses"] for use in run.uses] == ["actions/setup-python@v5", "actions/upload-artifact@v4"]
    assert run.uses[0]["with"] == {
        "python-version": "3.11", "cache": "pip", "cache-dependency-path": f"{ACTION.parent}/pyproject.toml"
    }  # fmt: skip
    assert run.uses[1]["with"]["path"] == "gate-report"
    assert f"pip install --disable-pip-version-check {ACTION.parent}" in calls


def test_fail_on_never_reports_without_failing(workspace: Path) -> None:
    run, _ = run_action(workspace, **{"fail-on": "never"})
    assert run.outcome == "success"
    assert run.outputs["verdict"] == "fail"
    assert "::error file=policies/release.yaml,line=8" in run.stdout
    assert "fail-on is never" in run.stdout


def test_a_passing_gate_passes(workspace: Path) -> None:
    run, _ = run_action(workspace, exit_code=0)
    assert run.outcome == "success"


def test_an_errored_gate_without_a_report_fails_and_says_why(workspace: Path) -> None:
    run, _ = run_action(workspace, exit_code=2, report=False)
    assert run.outcome == "failure"
    assert run.outputs["verdict"] == "error" and run.outputs["exit-code"] == "2"
    assert "::error title=gate::gate wrote no gate-report/report.json" in run.stdout
    assert run.summary == ""


def test_inputs_become_gate_arguments(workspace: Path) -> None:
    _, calls = run_action(
        workspace,
        model="pkg.models:build",
        weights="w.safetensors",
        device="cpu",
        **{"report-dir": "out dir", "extra-args": "--samples 500 --seed 3"},
    )
    gate_call = next(line for line in calls.splitlines() if line.startswith("gate "))
    arguments = ast.literal_eval(gate_call.removeprefix("gate "))
    assert arguments == [
        "check",
        "--policy",
        "policies/release.yaml",
        "--data",
        "data.npz",
        "--report-dir",
        "out dir",
        "--device",
        "cpu",
        "--model",
        "pkg.models:build",
        "--weights",
        "w.safetensors",
        "--samples",
        "500",
        "--seed",
        "3",
    ]


def test_empty_model_and_weights_are_left_out(workspace: Path) -> None:
    _, calls = run_action(workspace)
    assert "--model" not in calls and "--weights" not in calls


def test_a_version_installs_from_the_index(workspace: Path) -> None:
    _, calls = run_action(workspace, version="0.1.0")
    assert "pip install --disable-pip-version-check gate-ml==0.1.0" in calls


def test_no_upload_when_not_asked(workspace: Path) -> None:
    run, _ = run_action(workspace, **{"upload-artifact": "false"})
    assert [use["uses"] for use in run.uses] == ["actions/setup-python@v5"]


def test_a_malformed_fail_on_is_rejected_before_gate_runs(workspace: Path) -> None:
    run, calls = run_action(workspace, **{"fail-on": "pgd-8; rm -rf /"})
    assert run.outcome == "failure"
    assert run.step_outcomes["install"] == "failure" and run.step_outcomes["check"] == "skipped"
    assert "fail-on must be fail, never, or a comma-separated list" in run.stdout
    assert "gate " not in calls


@pytest.mark.parametrize(
    ("fail_on", "exit_code", "outcome", "says"),
    [
        ("pgd-8", 1, "failure", "checks selected by fail-on did not pass: pgd-8 (fail)"),
        ("clean-accuracy", 1, "success", "the 1 checks selected by fail-on passed or are waived"),
        ("warn", 1, "failure", "blur (warn)"),
        (
            "clean-accuracy, sometimes",
            1,
            "failure",
            "fail-on names sometimes, which the report has no check for",
        ),
        ("clean-accuracy", 2, "failure", "without a report"),
    ],
)
def test_fail_on_a_list_of_checks_and_severities(workspace: Path, fail_on, exit_code, outcome, says) -> None:
    run, _ = run_action(workspace, exit_code=exit_code, report=exit_code != 2, **{"fail-on": fail_on})
    assert run.outcome == outcome, run.stdout
    assert says in run.stdout


def test_extra_args_are_split_like_a_shell_but_never_evaluated(workspace: Path) -> None:
    _, calls = run_action(
        workspace, **{"extra-args": """--baseline "prod/my report.json" --seed '3' $HOME `id`"""}
    )
    gate_call = next(line for line in calls.splitlines() if line.startswith("gate "))
    arguments = ast.literal_eval(gate_call.removeprefix("gate "))
    assert arguments[arguments.index("--baseline") + 1] == "prod/my report.json"
    assert "$HOME" in arguments and "`id`" in arguments  # literal text, not a variable or a command


def test_unbalanced_quotes_in_extra_args_fail_the_step(workspace: Path) -> None:
    run, calls = run_action(workspace, **{"extra-args": '--baseline "unclosed'})
    assert run.step_outcomes["check"] == "failure" and "extra-args cannot be split" in run.stdout
    assert "gate " not in calls


def test_an_invalid_policy_becomes_annotations_and_a_summary(workspace: Path) -> None:
    stderr = (
        "error: invalid policy (2 problems):\n"
        "  policies/release.yaml:8:5: checks[1].min: Input should be a valid number (found 'x')\n"
        "  policies/release.yaml:12:3: waivers[0].expires: expected a date\n"
    )
    run, _ = run_action(workspace, exit_code=2, report=False, stderr=stderr)
    assert run.outcome == "failure"
    assert (
        "::error file=policies/release.yaml,line=8,col=5,title=gate%3A invalid input::"
        "checks[1].min: Input should be a valid number (found 'x')" in run.stdout
    )
    assert "::error file=policies/release.yaml,line=12,col=3," in run.stdout
    assert "## gate: could not evaluate" in run.summary and "waivers[0].expires" in run.summary


def test_a_cpu_runner_installs_the_cpu_build_of_torch(workspace: Path) -> None:
    _, calls = run_action(workspace)
    assert (
        "pip install --disable-pip-version-check torch --index-url https://download.pytorch.org/whl/cpu"
        in calls
    )
    _, calls = run_action(workspace, torch="preinstalled")
    assert "torch" not in calls.split("gate ")[0].replace("pytorch", "")


def test_inputs_cannot_inject_shell_code(workspace: Path) -> None:
    run_action(workspace, policy="$(touch injected)", **{"extra-args": "; touch injected2"})
    assert not (workspace / "injected").exists()
    assert not (workspace / "injected2").exists()


def test_run_steps_never_expand_expressions_inline() -> None:
    for step in load_action()["runs"]["steps"]:
        assert "${{" not in step.get("run", ""), step.get("name")


def test_action_metadata_has_the_required_structure() -> None:
    """The parts of GitHub's action metadata syntax that a runner refuses an action without."""
    action = load_action()
    assert isinstance(action["name"], str) and isinstance(action["description"], str)
    for name, spec in action["inputs"].items():
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name)
        assert set(spec) <= {"description", "required", "default", "deprecationMessage"}
        assert spec["description"]
        assert "default" in spec or spec.get("required")
    for name, spec in action["outputs"].items():
        assert set(spec) == {"description", "value"}, name
    assert action["runs"]["using"] == "composite"
    for step in action["runs"]["steps"]:
        assert ("run" in step) != ("uses" in step), step
        if "run" in step:
            assert step["shell"] == "bash"
        else:
            assert "shell" not in step and re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"])
    expected = {"policy", "model", "weights", "data", "report-dir", "device", "python-version", "version"}
    expected |= {"extra-args", "fail-on", "upload-artifact", "torch"}
    assert set(action["inputs"]) == expected


def schemastore_vendor_dir() -> Path:
    """SchemaStore's schemas as check-jsonschema vendors them (read as data, not imported)."""
    spec = importlib.util.find_spec("check_jsonschema")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("SchemaStore's schemas come from `pip install --no-deps check-jsonschema`")
    return Path(next(iter(spec.submodule_search_locations))) / "builtin_schemas" / "vendor"


def schemastore_action_schema() -> dict[str, Any]:
    return json.loads((schemastore_vendor_dir() / "github-actions.json").read_text(encoding="utf-8"))


def test_action_is_valid_against_the_schemastore_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = schemastore_action_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(load_action())
    ]
    assert errors == []


def test_the_schema_check_is_not_vacuous() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = schemastore_action_schema()
    action = load_action()
    del action["runs"]["steps"][1]["shell"]
    del action["description"]
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert list(validator.iter_errors(action))


EXAMPLES = ACTION.parent / "examples"


def test_the_example_workflow_is_a_valid_workflow() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    vendor = schemastore_vendor_dir()
    schema = json.loads((vendor / "github-workflows.json").read_text(encoding="utf-8"))
    workflow = YAML(typ="safe", pure=True).load(
        (EXAMPLES / "github-workflow.yml").read_text(encoding="utf-8")
    )
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert [error.message for error in validator.iter_errors(workflow)] == []


def test_the_example_workflow_passes_only_inputs_the_action_declares() -> None:
    workflow = YAML(typ="safe", pure=True).load(
        (EXAMPLES / "github-workflow.yml").read_text(encoding="utf-8")
    )
    declared = set(load_action()["inputs"])
    gate_steps = [step for step in workflow["jobs"]["gate"]["steps"] if step.get("id") == "gate"]
    assert len(gate_steps) == 1
    assert set(gate_steps[0]["with"]) <= declared
    assert {"policy", "data"} <= set(gate_steps[0]["with"])


def test_the_example_policy_is_valid() -> None:
    from gate.policy import load_policy

    resolved = load_policy(EXAMPLES / "gate-policy.yaml")
    assert {"pgd-linf-8", "masking", "blur-3", "deletion", "clean-accuracy"} <= {
        check.id for check in resolved.policy.checks
    }


def test_a_previous_run_s_report_is_never_published_for_this_one(workspace: Path) -> None:
    # gate stops at a bad flag before it clears anything; the action clears the folder itself
    folder = workspace / "gate-report"
    shutil.copytree(workspace.parent / "prepared", folder)
    (folder / "artifacts").mkdir()
    (folder / "artifacts" / "old.png").write_bytes(b"png")
    (folder / "model").mkdir()
    (folder / "model" / "cached.onnx").write_bytes(b"onnx")
    run, _ = run_action(workspace, exit_code=2, report=False, stderr="Error: No such option: --sampels\n")
    assert run.outputs["verdict"] == "error" and run.outcome == "failure"
    assert "FAIL" not in run.summary and "No such option" in run.summary
    assert not (folder / "report.json").exists() and not (folder / "artifacts").exists()
    assert (folder / "model" / "cached.onnx").exists()  # the export cache stays
