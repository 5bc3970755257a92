"""``extends``: built-in and relative parents, override by check id, settings, diamonds, cycles, missing parents."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate.errors import PolicyError
from gate.policy import builtin_policy_names, load_policy
from gate.policy.loader import builtin_policy_dir

from .helpers import WritePolicy, only_problem


def test_builtin_baseline_loads_on_its_own_and_by_name() -> None:
    assert "baseline" in builtin_policy_names()
    resolved = load_policy("builtin:baseline")
    assert resolved.policy.name == "baseline"
    assert "clean-accuracy" in [check.id for check in resolved.policy.checks]
    assert resolved.path == builtin_policy_dir().resolve() / "baseline.yaml"


def test_every_builtin_policy_is_valid() -> None:
    for name in builtin_policy_names():
        assert load_policy(f"builtin:{name}").policy.checks


def test_file_overrides_builtin_check_by_id_and_keeps_the_others(write_policy: WritePolicy) -> None:
    inherited = {check.id: check for check in load_policy("builtin:baseline").policy.checks}
    path = write_policy(
        """
        version: 1
        name: stricter
        extends: [builtin:baseline]
        checks:
          - id: clean-accuracy
            kind: accuracy
            min: 0.99
          - id: own
            kind: accuracy
            max_drop: 0.01
        """
    )
    resolved = load_policy(path)
    checks = {check.id: check for check in resolved.policy.checks}

    assert checks["clean-accuracy"].min == 0.99
    assert set(checks) == set(inherited) | {"own"}
    assert [policy_file.path.name for policy_file in resolved.files] == ["baseline.yaml", "policy.yaml"]
    # the derived policy is reported under its own name, not its parent's
    assert resolved.policy.name == "stricter"
    assert resolved.check_origins["clean-accuracy"].path == path.resolve()
    assert resolved.check_origins["clean-accuracy"].position.line == 5


def test_name_and_description_are_not_inherited(write_policy: WritePolicy) -> None:
    path = write_policy("version: 1\nextends: [builtin:baseline]\n", name="team-gate.yaml")
    policy = load_policy(path).policy
    assert (policy.name, policy.description) == ("team-gate", None)


def test_relative_paths_resolve_against_the_extending_file(write_policy: WritePolicy, tmp_path: Path) -> None:
    write_policy("version: 1\nchecks:\n  - {id: shared, kind: accuracy, min: 0.5}\n", name="common/base.yaml")
    write_policy("version: 1\nextends: [../../common/base.yaml]\n", name="teams/vision/policy.yaml")
    top = write_policy("version: 1\nextends: [vision/policy.yaml]\n", name="teams/top.yaml")

    resolved = load_policy(top)

    assert [check.id for check in resolved.policy.checks] == ["shared"]
    assert resolved.files[0].path == (tmp_path / "common" / "base.yaml").resolve()


def test_settings_override_in_order_and_confidence_null_overrides(write_policy: WritePolicy) -> None:
    write_policy(
        "version: 1\nconfidence: 0.9\nsamples: 100\nseed: 3\ninput: {range: [0, 255]}\n"
        "checks:\n  - {id: a, kind: accuracy, min: 0.5}\n",
        name="parent.yaml",
    )
    child = write_policy("version: 1\nextends: [parent.yaml]\nconfidence: null\nseed: 4\n", name="child.yaml")

    policy = load_policy(child).policy

    assert policy.confidence is None  # an explicit null is a setting, not an absence
    assert (policy.samples, policy.seed, policy.input.range) == (100, 4, (0.0, 255.0))


def test_later_extends_entries_override_earlier_ones_and_the_file_overrides_all(
    write_policy: WritePolicy,
) -> None:
    write_policy(
        "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.1}\n  - {id: b, kind: accuracy, min: 0.1}\n"
        "  - {id: c, kind: accuracy, min: 0.1}\n",
        name="first.yaml",
    )
    write_policy(
        "version: 1\nchecks:\n  - {id: b, kind: accuracy, min: 0.2}\n  - {id: c, kind: accuracy, min: 0.2}\n",
        name="second.yaml",
    )
    top = write_policy(
        "version: 1\nextends: [first.yaml, second.yaml]\nchecks:\n  - {id: c, kind: accuracy, min: 0.3}\n"
    )

    mins = {check.id: check.min for check in load_policy(top).policy.checks}

    assert mins == {"a": 0.1, "b": 0.2, "c": 0.3}


def test_diamond_reads_the_shared_ancestor_once(write_policy: WritePolicy) -> None:
    write_policy(
        "version: 1\nconfidence: 0.8\nchecks:\n  - {id: acc, kind: accuracy, min: 0.5}\n"
        "  - {id: root-only, kind: accuracy, min: 0.1}\n",
        name="root.yaml",
    )
    write_policy(
        "version: 1\nextends: [root.yaml]\nchecks:\n  - {id: acc, kind: accuracy, min: 0.6}\n",
        name="left.yaml",
    )
    write_policy(
        "version: 1\nextends: [root.yaml]\nchecks:\n  - {id: acc, kind: accuracy, min: 0.7}\n",
        name="right.yaml",
    )
    top = write_policy("version: 1\nextends: [left.yaml, right.yaml]\n", name="top.yaml")

    resolved = load_policy(top)

    assert [policy_file.path.name for policy_file in resolved.files] == [
        "root.yaml",
        "left.yaml",
        "right.yaml",
        "top.yaml",
    ]
    checks = {check.id: check.min for check in resolved.policy.checks}
    assert checks == {"acc": 0.7, "root-only": 0.1}
    assert resolved.policy.confidence == 0.8


@pytest.mark.parametrize("length", [1, 2, 3])
def test_cycles_are_errors_that_list_the_cycle(write_policy: WritePolicy, length: int) -> None:
    names = [f"p{index}.yaml" for index in range(length)]
    paths = [
        write_policy(f"version: 1\nextends: [{names[(index + 1) % length]}]\n", name=name)
        for index, name in enumerate(names)
    ]

    problem = only_problem(paths[0])

    cycle = " -> ".join(str(path.resolve()) for path in [*paths, paths[0]])
    assert f"policies extend each other in a cycle: {cycle}" in problem.message
    assert problem.path == paths[-1].resolve()  # the file whose extends entry closes the cycle
    assert (problem.position.line, problem.position.column, problem.field) == (2, 11, "extends[0]")


def test_missing_parent_is_located_at_its_extends_entry(write_policy: WritePolicy) -> None:
    path = write_policy("version: 1\nextends:\n  - builtin:baseline\n  - ./gone.yaml\n")
    problem = only_problem(path)
    assert (problem.position.line, problem.position.column, problem.field) == (4, 5, "extends[1]")
    assert "'./gone.yaml' was not found" in problem.message
    assert "gone.yaml" in problem.render() and f"{path.resolve()}:4:5:" in problem.render()


@pytest.mark.parametrize("reference", ["builtin:nosuch", "builtin:", "builtin:../policies/baseline"])
def test_unknown_builtin_lists_the_known_ones(write_policy: WritePolicy, reference: str) -> None:
    path = write_policy(f"version: 1\nextends:\n  - '{reference}'\n")
    problem = only_problem(path)
    assert (problem.position.line, problem.field) == (3, "extends[0]")
    assert f"unknown built-in policy {reference!r}; built-in policies are: baseline" in problem.message


def test_unknown_builtin_as_the_policy_itself() -> None:
    with pytest.raises(PolicyError, match="unknown built-in policy 'builtin:nosuch'"):
        load_policy("builtin:nosuch")


def test_an_invalid_parent_is_reported_in_the_parent(write_policy: WritePolicy) -> None:
    parent = write_policy("version: 1\nchecks:\n  - {id: a, kind: accuracy, mni: 0.5}\n", name="parent.yaml")
    child = write_policy("version: 1\nextends: [parent.yaml]\n", name="child.yaml")
    problem = only_problem(child)
    assert problem.path == parent.resolve()
    assert problem.field == "checks[0].mni"


def test_digest_covers_inherited_files(write_policy: WritePolicy) -> None:
    parent = write_policy("version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\n", name="parent.yaml")
    child = write_policy("version: 1\nextends: [parent.yaml]\n", name="child.yaml")
    before = load_policy(child).sha256
    parent.write_text(parent.read_text().replace("0.5", "0.6"))
    assert load_policy(child).sha256 != before


def test_waivers_can_name_inherited_checks_and_are_inherited(write_policy: WritePolicy) -> None:
    write_policy(
        "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\nwaivers:\n"
        "  - {check: a, reason: old, approved_by: x, expires: 2030-01-01}\n",
        name="parent.yaml",
    )
    child = write_policy(
        "version: 1\nextends: [parent.yaml]\nwaivers:\n"
        "  - {check: a, reason: renewed, approved_by: y, expires: 2031-01-01}\n"
    )
    resolved = load_policy(child)
    waiver = resolved.policy.waiver_for("a")
    assert waiver is not None and waiver.reason == "renewed"
    assert len(resolved.policy.waivers) == 1
    assert resolved.waiver_origins["a"].path == child.resolve()
