"""``extends``: built-in and relative parents, override by check id, settings, diamonds, cycles, missing parents,
and where it may read: builtin:NAME and the policy's repository, plus the folders the person running gate allows."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from gate.cli import main
from gate.errors import PolicyError
from gate.policy import PolicyValidationError, allowed_policy_roots, builtin_policy_names, load_policy
from gate.policy.loader import builtin_policy_dir, repository_root

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
    (tmp_path / ".git").mkdir()  # the repository whose files extends may read, ../ included
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


# --------------------------------------------------------------------- where extends may read (issue 20)
SECRET = "DB_PASSWORD: hunter2-secret\nAPI_KEY: sk-live-0123456789\n"
SHADOW = "root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository (a folder with .git) inside tmp_path, with a folder of secrets beside it."""
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secrets.yaml").write_text(SECRET)
    (tmp_path / "outside" / "shadow").write_text(SHADOW)
    (tmp_path / "outside" / "base.yaml").write_text(
        "version: 1\nchecks:\n  - {id: shared, kind: accuracy, min: 0.5}\n"
    )
    return tmp_path / "repo"


def _extending(repo: Path, reference: str, name: str = "policies/policy.yaml") -> Path:
    path = repo / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"version: 1\nextends:\n  - {reference!r}\n")
    return path


def _assert_no_secret(text: str) -> None:
    for secret in ("hunter2", "sk-live", "DB_PASSWORD", "API_KEY", "$6$", "hashhash", "daemon"):
        assert secret not in text, text


@pytest.mark.parametrize(
    "reference",
    [
        "{outside}/secrets.yaml",
        "../../outside/secrets.yaml",
        "../../outside/shadow",
        "/etc/shadow",
        "/etc/passwd",
    ],
)
def test_extends_outside_the_repository_is_refused_without_reading_it(repo: Path, reference: str) -> None:
    path = _extending(repo, reference.format(outside=repo.parent / "outside"))

    problem = only_problem(path)

    assert (problem.path, problem.field) == (path.resolve(), "extends[0]")
    assert (problem.position.line, problem.position.column) == (3, 5)
    assert f"outside the policy's repository ({repo.resolve()})" in problem.message
    assert "builtin:NAME" in problem.message and "--policy-root" in problem.message
    _assert_no_secret(problem.render())


def test_an_outside_file_that_does_not_exist_reads_the_same_as_one_that_does(repo: Path) -> None:
    # "not found" would tell a policy author which files exist on the CI machine
    present = only_problem(_extending(repo, "/etc/passwd", "a.yaml")).message
    absent = only_problem(_extending(repo, "/etc/no-such-file-here", "b.yaml")).message
    assert present.replace("/etc/passwd", "X") == absent.replace("/etc/no-such-file-here", "X")


def test_a_symbolic_link_out_of_the_repository_is_outside(repo: Path) -> None:
    (repo / "policies").mkdir()
    (repo / "policies" / "base.yaml").symlink_to(repo.parent / "outside" / "secrets.yaml")
    problem = only_problem(_extending(repo, "base.yaml"))
    assert "outside the policy's repository" in problem.message and "symbolic link" in problem.message
    _assert_no_secret(problem.render())


def test_a_symbolic_link_inside_the_repository_is_followed(repo: Path) -> None:
    (repo / "shared").mkdir()
    (repo / "shared" / "base.yaml").write_text("version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\n")
    (repo / "policies").mkdir()
    (repo / "policies" / "base.yaml").symlink_to(repo / "shared" / "base.yaml")
    resolved = load_policy(_extending(repo, "base.yaml"))
    assert resolved.files[0].path == (repo / "shared" / "base.yaml").resolve()


def test_the_repository_is_the_nearest_folder_with_a_git_entry(repo: Path) -> None:
    # ../ may climb inside the repository; a .git file (a worktree, a submodule) counts like a folder
    (repo / "base.yaml").write_text("version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\n")
    assert load_policy(_extending(repo, "../../base.yaml", "teams/vision/policy.yaml")).policy.checks
    (repo / "teams" / ".git").write_text("gitdir: ../.git/worktrees/teams\n")
    problem = only_problem(repo / "teams" / "vision" / "policy.yaml")
    assert f"outside the policy's repository ({(repo / 'teams').resolve()})" in problem.message


def test_without_a_repository_the_policy_folder_is_the_root(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\n")
    policy = tmp_path / "team" / "policy.yaml"
    policy.parent.mkdir()
    policy.write_text("version: 1\nextends: [../base.yaml]\n")
    assert repository_root(policy) == policy.parent
    assert f"outside the policy's repository ({policy.parent.resolve()})" in only_problem(policy).message


def test_policy_roots_allow_a_folder_the_person_running_gate_names(repo: Path) -> None:
    outside = repo.parent / "outside"
    path = _extending(repo, str(outside / "base.yaml"))

    resolved = load_policy(path, policy_roots=[outside])

    assert [check.id for check in resolved.policy.checks] == ["shared"]
    assert resolved.files[0].path == (outside / "base.yaml").resolve()


def test_policy_roots_do_not_make_a_non_policy_file_readable(repo: Path) -> None:
    outside = repo.parent / "outside"
    path = _extending(repo, str(outside / "secrets.yaml"))
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(path, policy_roots=[outside])
    (problem,) = caught.value.problems
    assert problem.path == (outside / "secrets.yaml").resolve()
    assert (problem.position.line, problem.position.column, problem.field) == (1, 1, "version")
    assert "a gate policy file starts with version: 1" in problem.message
    _assert_no_secret(str(caught.value))


def test_allowed_policy_roots_reach_a_loader_that_is_called_without_them(repo: Path) -> None:
    # gate check reaches load_policy through run_gate, whose options carry no roots
    outside = repo.parent / "outside"
    path = _extending(repo, str(outside / "base.yaml"))
    with allowed_policy_roots([outside]):
        assert load_policy(path).policy.checks
    with pytest.raises(PolicyValidationError, match="outside the policy's repository"):
        load_policy(path)


def test_a_policy_file_that_links_out_of_its_repository_is_refused(repo: Path) -> None:
    # a pull request can replace the policy CI names with a link to any file on the runner
    link = repo / "gate-policy.yaml"
    link.symlink_to(repo.parent / "outside" / "secrets.yaml")
    with pytest.raises(PolicyError, match="outside the policy's repository") as caught:
        load_policy(link)
    assert not isinstance(caught.value, PolicyValidationError)
    _assert_no_secret(str(caught.value))
    with pytest.raises(PolicyValidationError, match="starts with version: 1") as allowed:
        load_policy(link, policy_roots=[repo.parent / "outside"])  # allowed, and still not a policy
    _assert_no_secret(str(allowed.value))


@pytest.mark.parametrize("length", [300, 5_000])
def test_an_overlong_file_name_is_a_located_policy_error(repo: Path, length: int) -> None:
    path = _extending(repo, "a" * length + ".yaml")
    problem = only_problem(path)
    assert (problem.field, problem.position.line) == ("extends[0]", 3)
    assert "file name is too long" in problem.message
    assert f"({length + 5} characters)" in problem.message and len(problem.message) < 400


def test_an_overlong_file_name_fails_validate_with_exit_2(repo: Path) -> None:
    path = _extending(repo, "x" * 5_000)
    result = CliRunner().invoke(main, ["policy", "validate", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path.resolve()}:3:5: extends[0]:" in result.stderr and "internal error" not in result.stderr


def test_an_unreadable_parent_is_a_located_policy_error(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "policies").mkdir()
    parent = repo / "policies" / "base.yaml"
    parent.write_text("version: 1\n")
    real_stat, denied = os.stat, str(parent.resolve())

    def refuse(name: str | Path, *args: object, **kwargs: object) -> os.stat_result:
        if os.fspath(name) == denied:
            raise PermissionError(13, "Permission denied", str(name))
        return real_stat(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", refuse)  # chmod means nothing to root, who runs many CI jobs
    problem = only_problem(_extending(repo, "base.yaml"))
    assert problem.field == "extends[0]"
    assert (
        problem.message == "the extended policy 'base.yaml': cannot read the policy file: Permission denied"
    )


def test_a_directory_is_refused(repo: Path) -> None:
    (repo / "policies" / "sub").mkdir(parents=True)
    problem = only_problem(_extending(repo, "sub"))
    assert problem.message == "the extended policy 'sub': expected a policy file, found a directory"


@pytest.mark.parametrize("as_top_level", [False, True])
def test_a_fifo_is_refused_without_being_opened(repo: Path, as_top_level: bool) -> None:
    (repo / "policies").mkdir()
    fifo = repo / "policies" / "pipe.yaml"
    os.mkfifo(fifo)
    path = fifo if as_top_level else _extending(repo, "pipe.yaml")
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            load_policy(path)
        except BaseException as exc:  # the thread hands any outcome back
            outcome.append(exc)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=5)
    if worker.is_alive():  # opened for reading, it waits for a writer: release it, then fail
        with open(fifo, "w"):
            pass
        pytest.fail("the loader opened the FIFO")
    (error,) = outcome
    assert isinstance(error, PolicyError)
    assert "expected a policy file, found a FIFO (named pipe)" in str(error)


def test_a_device_is_refused_by_type(repo: Path) -> None:
    problem = only_problem(_extending(repo, "/dev/zero"))  # outside, and a device even when allowed
    assert "outside" in problem.message
    with pytest.raises(PolicyValidationError, match="found a character device"):
        load_policy(_extending(repo, "/dev/zero", "b.yaml"), policy_roots=["/dev"])


@pytest.mark.parametrize(
    ("reference", "phrase"),
    [("", "found an empty text"), ("  ", "found an empty text"), ("a\x00b", "contains a NUL character")],
)
def test_extends_entries_that_name_no_file(write_policy: WritePolicy, reference: str, phrase: str) -> None:
    path = write_policy(f"version: 1\nextends: [{json.dumps(reference)}]\n")
    problem = only_problem(path)
    assert problem.field == "extends[0]" and phrase in problem.message


def test_a_very_deep_chain_of_extends_is_refused(write_policy: WritePolicy) -> None:
    for index in range(40):
        write_policy(f"version: 1\nextends: [p{index + 1}.yaml]\n", name=f"p{index}.yaml")
    write_policy("version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\n", name="p40.yaml")
    problem = only_problem(write_policy("version: 1\nextends: [p0.yaml]\n", name="top.yaml"))
    assert "extends nests more than 32 files deep" in problem.message


def test_an_overlong_builtin_name_is_an_unknown_builtin(write_policy: WritePolicy) -> None:
    # found by the fuzzer: the name went to the file system, whose ENAMETOOLONG was an internal error
    problem = only_problem(write_policy(f"version: 1\nextends: ['builtin:{'b' * 5_000}']\n"))
    assert problem.field == "extends[0]"
    assert (
        "unknown built-in policy 'builtin:bbbb" in problem.message and "(5008 characters)" in problem.message
    )


def test_require_weights_is_inherited_and_can_be_overridden(write_policy: WritePolicy) -> None:
    base = write_policy(
        "version: 1\nrequire_weights: true\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\n", "base.yaml"
    )
    child = write_policy("version: 1\nextends: [base.yaml]\n", "child.yaml")
    assert load_policy(child).policy.require_weights is True
    relaxed = write_policy("version: 1\nextends: [base.yaml]\nrequire_weights: false\n", "relaxed.yaml")
    assert load_policy(relaxed).policy.require_weights is False
    plain = write_policy("version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\n", "plain.yaml")
    assert load_policy(plain).policy.require_weights is False
    assert base.exists()
