"""``gate policy validate | schema | init`` and ``gate report-schema``, driven through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner, Result
from ruamel.yaml import YAML

from gate.cli import main
from gate.policy import builtin_policy_names
from gate.policy.loader import builtin_policy_dir
from gate.report.model import Report

GOOD = "version: 1\nname: good\nchecks:\n  - id: acc\n    kind: accuracy\n    min: 0.9\n"
BAD = "version: 1\nchecks:\n  - id: acc\n    kind: accuracy\n    mni: 0.9\n"


def invoke(*args: str | Path) -> Result:
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    assert "Traceback" not in result.output
    return result


def as_json_document(path: Path) -> Any:
    """A YAML policy as the plain JSON data an editor validates against the schema (dates as text)."""
    return json.loads(json.dumps(YAML(typ="safe", pure=True).load(path.read_text()), default=str))


def test_validate_accepts_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    result = invoke("policy", "validate", path)
    assert result.exit_code == 0
    assert f"{path}: valid (1 checks, 0 waivers)" in result.stdout


def test_validate_refuses_a_bad_file_with_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    result = invoke("policy", "validate", path)
    assert result.exit_code == 2
    assert f"{path}:5:5: checks[0].mni: unknown key (a typo?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_reports_every_file_and_fails_if_any_is_invalid(tmp_path: Path) -> None:
    good, bad, broken = tmp_path / "good.yaml", tmp_path / "bad.yaml", tmp_path / "broken.yaml"
    good.write_text(GOOD)
    bad.write_text(BAD)
    broken.write_text("version: 1\nchecks: [\n")

    result = invoke("policy", "validate", good, bad, broken, tmp_path / "absent.yaml", "builtin:baseline")

    assert result.exit_code == 2
    assert f"{good}: valid" in result.stdout and "builtin:baseline: valid" in result.stdout
    assert f"{bad}:5:5: checks[0].mni" in result.stderr
    assert f"{broken}: not valid YAML (line 3" in result.stderr
    assert "absent.yaml: policy file not found" in result.stderr


def test_validate_names_every_problem_of_a_file_with_its_line_column_and_field(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(
        "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 1.5}\n  - {id: a, kind: accuracy, min: 0.5}\n"
        "  - {id: b, kind: adversarial, epsilon: 8/0, min: 0.5}\nwaivers:\n"
        "  - {check: c, reason: r, approved_by: me, expires: 2020-13-45}\n"
    )
    result = invoke("policy", "validate", path)
    assert result.exit_code == 2
    assert "invalid policy (5 problems)" in result.stderr
    for located in (
        ":3:29: checks[0].min: expected a number in [0, 1]",
        ":4:6: checks[1].id: check id 'a' is used twice",
        ":5:32: checks[2].epsilon: the fraction '8/0' divides by zero",
        ":7:5: waivers: the waiver names check 'c'",
        ":7:44: waivers[0].expires: expected a valid date YYYY-MM-DD, found '2020-13-45'",
    ):
        assert f"{path}{located}" in result.stderr


def test_validate_all_good_files_exit_zero(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(GOOD)
    second.write_text("version: 1\nextends: [a.yaml]\n")
    result = invoke("policy", "validate", first, second)
    assert result.exit_code == 0
    assert result.stdout.count(": valid") == 2


def test_validate_needs_a_file() -> None:
    assert invoke("policy", "validate").exit_code == 2


@pytest.fixture(scope="module")
def policy_schema() -> dict[str, Any]:
    result = invoke("policy", "schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def test_schema_validates_the_builtin_policies(policy_schema: dict[str, Any]) -> None:
    assert builtin_policy_names()
    for name in builtin_policy_names():
        jsonschema.validate(as_json_document(builtin_policy_dir() / f"{name}.yaml"), policy_schema)


def test_schema_accepts_fractions_and_rejects_typos_and_unknown_kinds(policy_schema: dict[str, Any]) -> None:
    good = {
        "version": 1,
        "checks": [{"id": "pgd", "kind": "adversarial", "epsilon": "8/255", "min": 0.4}],
        "waivers": [{"check": "pgd", "reason": "r", "approved_by": "me", "expires": "2030-01-31"}],
    }
    jsonschema.validate(good, policy_schema)
    for bad in (
        {"version": 1, "checks": [{"id": "a", "kind": "accuracy", "mni": 0.9}]},
        {"version": 1, "checks": [{"id": "a", "kind": "acuracy", "min": 0.9}]},
        {"version": 2},
        {"version": 1, "confidence": 1.5},
        {"version": 1, "checks": [{"id": "a", "kind": "adversarial", "epsilon": "8/x", "min": 0.4}]},
        {"version": 1, "checks": [{"id": "a", "kind": "adversarial", "epsilon": -0.1, "min": 0.4}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, policy_schema)


def test_schema_describes_every_field_and_titles_kinds_in_the_policy_s_words(
    policy_schema: dict[str, Any],
) -> None:
    from gate.policy.specs import ALL_CHECK_SPECS, kind_of

    undescribed = [
        f"{name}.{field}"
        for name, definition in [("policy", policy_schema), *policy_schema["$defs"].items()]
        for field, spec in definition.get("properties", {}).items()
        if not spec.get("description")
    ]
    assert undescribed == []
    titles = {definition["title"] for definition in policy_schema["$defs"].values()}
    assert {f"{kind_of(spec)} check" for spec in ALL_CHECK_SPECS} <= titles
    assert policy_schema["title"] == "gate policy" and policy_schema["description"]
    assert all(definition.get("description") for definition in policy_schema["$defs"].values())
    assert not [title for title in titles if "Spec" in title or title[:1].isupper()]


def test_schema_can_be_written_to_a_file(tmp_path: Path, policy_schema: dict[str, Any]) -> None:
    target = tmp_path / "gate-policy.schema.json"
    result = invoke("policy", "schema", "--output", target)
    assert result.exit_code == 0
    assert json.loads(target.read_text()) == policy_schema
    assert result.stdout == ""


def test_init_writes_a_policy_that_validates_and_matches_the_schema(
    tmp_path: Path, policy_schema: dict[str, Any]
) -> None:
    target = tmp_path / "gate-policy.yaml"
    result = invoke("policy", "init", target, "--name", "vision-release")
    assert result.exit_code == 0 and f"wrote {target}" in result.stdout
    # the schema the policy's first line points editors to is written beside it
    assert target.read_text().startswith("# yaml-language-server: $schema=gate-policy.schema.json\n")
    assert json.loads((tmp_path / "gate-policy.schema.json").read_text()) == policy_schema

    validated = invoke("policy", "validate", target)
    assert validated.exit_code == 0, validated.stderr
    assert "name: vision-release" in target.read_text()
    jsonschema.validate(as_json_document(target), policy_schema)


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    target = tmp_path / "gate-policy.yaml"
    target.write_text("# mine\n")

    refused = invoke("policy", "init", target)
    assert refused.exit_code == 2
    assert "the file exists; pass --force to overwrite it" in refused.stderr
    assert target.read_text() == "# mine\n"

    forced = invoke("policy", "init", target, "--force")
    assert forced.exit_code == 0
    assert target.read_text().startswith("# yaml-language-server")


def test_init_defaults_to_gate_policy_yaml_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["policy", "init"])
    assert result.exit_code == 0
    assert (tmp_path / "gate-policy.yaml").is_file()


def test_report_schema_is_the_report_models_schema() -> None:
    result = invoke("report-schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema == Report.model_json_schema()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\nwaivers:\n"
            "  - {check: b, reason: r, approved_by: me, expires: 2030-01-01}\n",
            ":5:5: waivers: the waiver names check 'b'",
        ),
        ("version: 1\nextends: [policy.yaml]\n", ":2:11: extends[0]: policies extend each other in a cycle"),
        (
            "version: 1\nextends:\n  - builtin:nope\n",
            ":3:5: extends[0]: unknown built-in policy 'builtin:nope'",
        ),
        (b"version: 1\nname: caf\xe9\n", ": policy file is not UTF-8 text"),
        (
            "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.9, max: 0.1}\n",
            ":3:5: checks[0]: min (0.9)",
        ),
    ],
)
def test_validate_locates_loader_errors_without_a_traceback(
    tmp_path: Path, text: str | bytes, expected: str
) -> None:
    path = tmp_path / "policy.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    result = invoke("policy", "validate", path)
    assert result.exit_code == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


# --------------------------------------------------------------------- --policy-root: the runner's opt-in
@pytest.fixture
def shared_and_repo(tmp_path: Path) -> tuple[Path, Path]:
    """A shared folder of policies outside a repository whose policy extends one of them."""
    shared, repo = tmp_path / "shared", tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    shared.mkdir()
    (shared / "org.yaml").write_text(GOOD)
    (repo / "gate-policy.yaml").write_text(f"version: 1\nextends: [{shared / 'org.yaml'}]\n")
    (repo / "looser.yaml").write_text(
        f"version: 1\nextends: [{shared / 'org.yaml'}]\nchecks:\n  - {{id: acc, kind: accuracy, min: 0.5}}\n"
    )
    return shared, repo


def test_validate_refuses_extends_outside_the_repository(shared_and_repo: tuple[Path, Path]) -> None:
    _, repo = shared_and_repo
    result = invoke("policy", "validate", repo / "gate-policy.yaml")
    assert result.exit_code == 2
    assert f"{(repo / 'gate-policy.yaml').resolve()}:2:11: extends[0]: the extended policy" in result.stderr
    assert "outside the policy's repository" in result.stderr and "--policy-root" in result.stderr


@pytest.mark.parametrize("command", ["validate", "explain"])
def test_policy_root_lets_validate_and_explain_read_a_shared_folder(
    shared_and_repo: tuple[Path, Path], command: str
) -> None:
    shared, repo = shared_and_repo
    result = invoke("policy", command, "--policy-root", shared, repo / "gate-policy.yaml")
    assert result.exit_code == 0, result.stderr
    assert ("valid (1 checks" if command == "validate" else "acc") in result.stdout


def test_policy_root_is_repeatable_and_reaches_diff(
    shared_and_repo: tuple[Path, Path], tmp_path: Path
) -> None:
    shared, repo = shared_and_repo
    refused = invoke("policy", "diff", repo / "gate-policy.yaml", repo / "looser.yaml")
    assert refused.exit_code == 2 and "outside the policy's repository" in refused.stderr

    other = tmp_path / "other"
    other.mkdir()
    result = invoke(
        "policy", "diff", "--policy-root", other, "--policy-root", shared,
        repo / "gate-policy.yaml", repo / "looser.yaml",
    )  # fmt: skip
    assert result.exit_code == 1, result.stderr  # min 0.9 -> 0.5 is looser
    assert "looser" in result.stdout


def test_policy_root_must_be_an_existing_folder(shared_and_repo: tuple[Path, Path]) -> None:
    shared, repo = shared_and_repo
    for root in (shared / "missing", shared / "org.yaml"):
        result = invoke("policy", "validate", "--policy-root", root, repo / "gate-policy.yaml")
        assert result.exit_code == 2 and "--policy-root" in result.stderr


def test_a_secret_file_through_extends_is_never_printed(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "id_key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n")
    (tmp_path / "env.yaml").write_text("AWS_SECRET_ACCESS_KEY: wJalrXUtnFEMI\nversion: '3.8'\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nextends: [id_key, env.yaml]\n")
    first = invoke("policy", "validate", policy)
    policy.write_text("version: 1\nextends: [env.yaml]\n")
    second = invoke("policy", "validate", policy)
    assert (first.exit_code, second.exit_code) == (2, 2)
    assert f"{tmp_path / 'id_key'}: expected a mapping of policy keys at the top, found a str" in first.stderr
    assert f"{tmp_path / 'env.yaml'}:2:1: version: expected the number 1" in second.stderr
    for secret in ("OPENSSH", "b3Blbn", "AWS_SECRET", "wJalr", "3.8"):
        assert secret not in first.output + second.output
