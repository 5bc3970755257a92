"""A policy's ``task`` decides which checks, attacks and corruptions it may ask for; refusals carry lines."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner
from conftest import write_policy

from gate.cli import main
from gate.policy import load_policy
from gate.policy.loader import builtin_policy_names
from gate.policy.specs import AttributionSpec
from gate.policy.task_support import spec_problems
from gate.tasks.classification import TABULAR_CLASSIFICATION

from .helpers import only_problem

TABULAR = """
    version: 1
    task: tabular_classification
    checks:
      - id: accuracy
        kind: accuracy
        min: 0.9
      - id: pgd
        kind: adversarial
        attack: {attack}
        epsilon: 0.05
        min: 0.5
      - id: noise
        kind: corruption
        corruption: {corruption}
        min: 0.5
"""


def test_a_tabular_policy_with_feature_attacks_and_noise_loads(tmp_path):
    policy = load_policy(
        write_policy(tmp_path / "p.yaml", TABULAR.format(attack="pgd", corruption="gaussian_noise"))
    )
    assert policy.policy.task == "tabular_classification"


@pytest.mark.parametrize(
    ("attack", "corruption", "line", "field", "words"),
    [
        ("square", "gaussian_noise", 9, "checks[1].attack", "attack 'square' does not support the task"),
        ("autoattack", "gaussian_noise", 9, "checks[1].attack", "attack 'autoattack' does not support"),
        ("pgd", "jpeg", 14, "checks[2].corruption", "corruption 'jpeg' needs images"),
    ],
)
def test_what_the_task_cannot_run_is_refused_at_its_line(tmp_path, attack, corruption, line, field, words):
    path = write_policy(tmp_path / "p.yaml", TABULAR.format(attack=attack, corruption=corruption))
    problem = only_problem(path)
    assert problem.path == path and problem.position is not None and problem.position.line == line
    assert problem.field == field and words in problem.message
    assert "tabular_classification" in problem.message


def test_a_check_kind_the_task_refuses_points_at_its_kind():
    # No task refuses a whole kind today (tabular attributions are refused per method and metric, see
    # tests/checks/test_attribution_tabular.py), so the rule is read on a task that would.
    without = dataclasses.replace(
        TABULAR_CLASSIFICATION,
        check_kinds=TABULAR_CLASSIFICATION.check_kinds - {"attribution"},
        why_not=(("attribution", "its maps are defined on images"),),
    )
    spec = AttributionSpec(id="faithful", kind="attribution", metric="deletion_auc", max=0.5)
    ((field, message),) = spec_problems(spec, without)
    assert field == "kind" and "does not support check kind 'attribution'" in message


def test_gate_policy_validate_reports_the_task_refusal_with_exit_2(tmp_path):
    path = write_policy(tmp_path / "p.yaml", TABULAR.format(attack="square", corruption="pixelate"))
    result = CliRunner().invoke(main, ["policy", "validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"{path}:9:" in result.output and f"{path}:14:" in result.output


def test_an_inherited_check_is_located_in_the_file_that_wrote_it(tmp_path):
    parent = write_policy(
        tmp_path / "parent.yaml", TABULAR.format(attack="square", corruption="gaussian_noise")
    )
    parent.write_text(parent.read_text().replace("task: tabular_classification\n", ""))
    child = write_policy(
        tmp_path / "child.yaml", "version: 1\nextends: [parent.yaml]\ntask: tabular_classification\n"
    )
    problem = only_problem(child)
    assert problem.path == parent and problem.position is not None and problem.position.line == 8


def test_without_a_task_every_check_some_task_supports_is_accepted(tmp_path):
    body = TABULAR.format(attack="square", corruption="jpeg").replace(
        "    task: tabular_classification\n", ""
    )
    assert load_policy(write_policy(tmp_path / "p.yaml", body)).policy.task is None


@pytest.mark.parametrize("name", builtin_policy_names())
def test_builtin_policies_name_no_task_or_one_that_supports_them(name):
    load_policy(f"builtin:{name}")


def test_an_unknown_task_lists_the_known_ones(tmp_path):
    path = write_policy(
        tmp_path / "p.yaml",
        TABULAR.format(attack="pgd", corruption="gaussian_noise").replace(
            "tabular_classification", "detection"
        ),
    )
    problem = only_problem(path)
    assert (
        problem.field == "task"
        and "image_classification" in problem.message
        and "tabular_classification" in problem.message
    )
