"""Reading one policy file: what the format accepts, and a located, specific message for what it refuses."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gate.errors import PolicyError
from gate.policy import PolicyValidationError, load_policy, read_policy_file
from gate.policy.checks import (
    AccuracySpec,
    AdversarialSpec,
    AttributionSpec,
    CorruptionSpec,
    ExportParitySpec,
    GradientMaskingSpec,
)
from gate.policy.source import MAX_POLICY_BYTES

from .helpers import WritePolicy, only_problem

EVERY_KIND = """
version: 1
name: every-kind
description: One check of each kind.
input:
  range: [-1, 1]
confidence: 0.9
samples: 500
seed: 7
checks:
  - id: acc
    kind: accuracy
    min: 0.9
  - id: parity
    kind: export_parity
    min: 0.99
    max_abs_diff: 1e-4
    noise: 1/255
  - id: pgd
    kind: adversarial
    attack: apgd-ce
    norm: l2
    epsilon: 8/255
    steps: 50
    restarts: 2
    step_size: 2/255
    targeted: true
    examples: 8
    min: 0.4
    severity: warn
  - id: masking
    kind: gradient_masking
    epsilon: 0.03
    sweep: [1/255, 0.5]
    tolerance: 0.1
  - id: blur
    kind: corruption
    corruption: gaussian_blur
    level: 5
    min: 0.7
    max_drop: 0.05
  - id: deletion
    kind: attribution
    method: rise
    metric: deletion_auc
    target: prediction
    baseline: 0.5
    samples: 200
    max: 0.3
    timeout: 60
"""


def test_every_check_kind_parses_with_its_fields(write_policy: WritePolicy) -> None:
    policy = load_policy(write_policy(EVERY_KIND)).policy

    assert [type(check) for check in policy.checks] == [
        AccuracySpec,
        ExportParitySpec,
        AdversarialSpec,
        GradientMaskingSpec,
        CorruptionSpec,
        AttributionSpec,
    ]
    assert (policy.name, policy.confidence, policy.samples, policy.seed) == ("every-kind", 0.9, 500, 7)
    assert policy.input.range == (-1.0, 1.0)
    acc, parity, pgd, masking, blur, deletion = policy.checks
    assert parity.max_abs_diff == pytest.approx(1e-4) and parity.noise == pytest.approx(1 / 255)
    assert pgd.epsilon == pytest.approx(8 / 255) and pgd.step_size == pytest.approx(2 / 255)
    assert (pgd.attack, pgd.norm, pgd.steps, pgd.restarts, pgd.targeted, pgd.severity) == (
        "apgd-ce",
        "l2",
        50,
        2,
        True,
        "warn",
    )
    assert masking.sweep == pytest.approx([1 / 255, 0.5])
    assert (blur.corruption, blur.level, blur.max_drop) == ("gaussian_blur", 5, 0.05)
    assert deletion.baseline == 0.5 and deletion.timeout == 60
    assert deletion.better_when_higher is False and deletion.metric_name == "deletion_auc"
    assert acc.metric_name == "accuracy" and pgd.metric_name == "robust_accuracy"


def test_defaults_fill_what_a_file_leaves_out(write_policy: WritePolicy) -> None:
    path = write_policy(
        """
        version: 1
        checks:
          - {id: pgd, kind: adversarial, epsilon: 0.1, min: 0.5}
          - {id: masking, kind: gradient_masking, epsilon: 0.1}
          - {id: attr, kind: attribution, metric: roi_mass, min: 0.2}
        """
    )
    resolved = load_policy(path)
    policy = resolved.policy

    assert policy.name == "policy"  # the file's stem when the file has no name
    assert (policy.confidence, policy.samples, policy.seed) == (0.95, None, 0)
    assert policy.input.range == (0.0, 1.0)
    pgd, masking, attr = policy.checks
    assert (pgd.attack, pgd.norm, pgd.restarts, pgd.targeted, pgd.severity, pgd.examples) == (
        "pgd",
        "linf",
        1,
        False,
        "block",
        4,
    )
    # gradient_masking needs no threshold: it defaults to "no findings"
    assert masking.max == 0 and masking.higher_is_better is False
    assert (attr.method, attr.target, attr.baseline) == ("integrated_gradients", "label", "zero")
    assert len(resolved.sha256) == 64


@pytest.mark.parametrize(
    ("written", "expected"),
    [("8/255", 8 / 255), ("1/2", 0.5), (" 3 / 4 ", 0.75), ("1e-2/2", 0.005), ("0.25", 0.25), ("0.5", 0.5)],
)
def test_fractions_and_quoted_numbers_are_numbers(
    write_policy: WritePolicy, written: str, expected: float
) -> None:
    path = write_policy(
        f"version: 1\nchecks:\n  - {{id: a, kind: adversarial, epsilon: '{written}', min: 0}}\n"
    )
    (check,) = load_policy(path).policy.checks
    assert check.epsilon == pytest.approx(expected)


def test_json_is_accepted_and_located_like_yaml(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"version": 1, "checks": [{"id": "a", "kind": "accuracy", "min": 0.5}]}))
    assert load_policy(good).policy.checks[0].min == 0.5

    bad = tmp_path / "bad.json"
    bad.write_text(
        '{\n  "version": 1,\n  "checks": [\n    {"id": "a", "kind": "accuracy", "mn": 0.5}\n  ]\n}\n'
    )
    problem = only_problem(bad)
    assert (problem.path, problem.field) == (bad, "checks[0].mn")
    assert (problem.position.line, problem.position.column) == (4, 37)


# Each case: the policy text, then line, column, field path and a phrase the message must contain.
BAD_POLICIES = {
    "unknown key": (
        "version: 1\nchecks:\n  - id: a\n    kind: accuracy\n    mni: 0.9\n",
        (5, 5, "checks[0].mni", "unknown key (a typo?)"),
    ),
    "unknown top-level key": (
        "version: 1\nconfidnce: 0.9\nchecks:\n  - {id: a, kind: accuracy, min: 0.9}\n",
        (2, 1, "confidnce", "unknown key"),
    ),
    "wrong type": (
        "version: 1\nchecks:\n  - id: a\n    kind: accuracy\n    min: high\n",
        (5, 5, "checks[0].min", "valid number"),
    ),
    "boolean as number": (
        "version: 1\nchecks:\n  - id: a\n    kind: accuracy\n    min: true\n",
        (5, 5, "checks[0].min", "expected a number, found the boolean True"),
    ),
    "boolean as version": (
        "version: true\nchecks:\n  - {id: a, kind: accuracy, min: 0.9}\n",
        (1, 1, "version", "expected the number 1"),
    ),
    "missing required field": (
        "version: 1\nchecks:\n  - id: a\n    kind: adversarial\n    min: 0.5\n",
        (3, 5, "checks[0].epsilon", "this required field is missing"),
    ),
    "missing id": (
        "version: 1\nchecks:\n  - kind: accuracy\n    min: 0.5\n",
        (3, 5, "checks[0].id", "this required field is missing"),
    ),
    "unknown kind": (
        "version: 1\nchecks:\n  - id: a\n    kind: acuracy\n    min: 0.5\n",
        (4, 5, "checks[0].kind", "unknown check kind 'acuracy'; expected one of: accuracy, export_parity"),
    ),
    "missing kind": (
        "version: 1\nchecks:\n  - id: a\n    min: 0.5\n",
        (3, 5, "checks[0].kind", "missing; expected one of: accuracy"),
    ),
    "duplicate ids": (
        "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\n  - id: b\n    kind: accuracy\n"
        "    min: 0.5\n  - id: a\n    kind: accuracy\n    min: 0.6\n",
        (7, 5, "checks[2].id", "check id 'a' is used twice"),
    ),
    "min above max": (
        "version: 1\nchecks:\n  - id: a\n    kind: accuracy\n    min: 0.9\n    max: 0.5\n",
        (3, 5, "checks[0]", "min (0.9) is greater than max (0.5)"),
    ),
    "no threshold": (
        "version: 1\nchecks:\n  - id: a\n    kind: accuracy\n",
        (3, 5, "checks[0]", "a check needs a threshold: give min, max or max_drop"),
    ),
    "fraction dividing by zero": (
        "version: 1\nchecks:\n  - id: a\n    kind: adversarial\n    epsilon: 1/0\n    min: 0.5\n",
        (5, 5, "checks[0].epsilon", "the fraction '1/0' divides by zero"),
    ),
    "fraction of words": (
        "version: 1\nchecks:\n  - id: a\n    kind: adversarial\n    epsilon: a/b\n    min: 0.5\n",
        (5, 5, "checks[0].epsilon", "expected a number or a fraction such as 8/255, found 'a/b'"),
    ),
    "negative epsilon": (
        "version: 1\nchecks:\n  - id: a\n    kind: adversarial\n    epsilon: -1/255\n    min: 0.5\n",
        (5, 5, "checks[0].epsilon", "greater than 0"),
    ),
    "infinite max_drop": (
        "version: 1\nchecks:\n  - id: a\n    kind: accuracy\n    max_drop: .inf\n",
        (5, 5, "checks[0].max_drop", "finite number"),
    ),
    "NaN threshold": (
        "version: 1\nchecks:\n  - id: a\n    kind: accuracy\n    min: .nan\n",
        (5, 5, "checks[0].min", "finite number"),
    ),
    "version 2": (
        "version: 2\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\n",
        (1, 1, "version", "Input should be 1 (found 2)"),
    ),
    "missing version": (
        "checks:\n  - {id: a, kind: accuracy, min: 0.5}\n",
        (1, 1, "version", "this required field is missing"),
    ),
    "confidence 1": (
        "version: 1\nconfidence: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\n",
        (2, 1, "confidence", "less than 1"),
    ),
    "confidence 0": (
        "version: 1\nconfidence: 0\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\n",
        (2, 1, "confidence", "greater than or equal to 0.5"),
    ),
    "bad input range": (
        "version: 1\ninput:\n  range: [1, 0]\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\n",
        (3, 3, "input.range", "low < high"),
    ),
    "bad check id": (
        "version: 1\nchecks:\n  - id: 'a b'\n    kind: accuracy\n    min: 0.5\n",
        (3, 5, "checks[0].id", "should match pattern"),
    ),
    "bad corruption level": (
        "version: 1\nchecks:\n  - id: a\n    kind: corruption\n    corruption: jpeg\n    level: 9\n"
        "    min: 0.5\n",
        (6, 5, "checks[0].level", "less than or equal to 5"),
    ),
    "bad waiver date": (
        "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\nwaivers:\n  - check: a\n"
        "    reason: r\n    approved_by: me\n    expires: tomorrow\n",
        (8, 5, "waivers[0].expires", "valid date"),
    ),
    "waiver naming no check": (
        "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\nwaivers:\n  - check: b\n"
        "    reason: r\n    approved_by: me\n    expires: 2030-01-01\n",
        (5, 5, "waivers", "names check 'b', which the policy does not define; defined checks: a"),
    ),
    "no checks at all": ("version: 1\nname: empty\n", (1, 1, "checks", "defines no checks")),
    "a list at the top": (
        "- version: 1\n",
        (1, 1, "", "expected a mapping of policy keys at the top, found a list"),
    ),
}


@pytest.mark.parametrize("case", list(BAD_POLICIES), ids=list(BAD_POLICIES))
def test_bad_policy_is_refused_with_file_line_column_field_and_expectation(
    write_policy: WritePolicy, case: str
) -> None:
    text, (line, column, field, phrase) = BAD_POLICIES[case]
    path = write_policy(text)

    problem = only_problem(path)

    assert problem.path == path
    assert problem.position is not None
    assert (problem.position.line, problem.position.column, problem.field) == (line, column, field)
    assert phrase in problem.message
    rendered = problem.render()
    assert rendered.startswith(f"{path}:{line}:{column}:")
    assert f"{field}:" in rendered if field else True


def test_every_problem_in_a_file_is_reported_not_just_the_first(write_policy: WritePolicy) -> None:
    path = write_policy(
        """
        version: 1
        checks:
          - id: a
            kind: accuracy
            mni: 0.9
          - id: b
            kind: adversarial
            min: 0.5
        """
    )
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(path)
    fields = sorted(problem.field for problem in caught.value.problems)
    assert fields == ["checks[0].mni", "checks[1].epsilon"]
    assert "2 problems" in str(caught.value)


def test_a_scalar_at_the_top_is_refused(write_policy: WritePolicy) -> None:
    problem = only_problem(write_policy("just words\n"))
    assert "expected a mapping of policy keys at the top, found a str" in problem.message


def test_empty_file_says_what_was_expected(write_policy: WritePolicy) -> None:
    path = write_policy("")
    problem = only_problem(path)
    assert (problem.path, problem.position) == (path, None)
    assert "empty" in problem.message and "version: 1" in problem.message
    assert problem.render().startswith(f"{path}: ")


def test_invalid_yaml_syntax_names_the_line(write_policy: WritePolicy) -> None:
    path = write_policy("version: 1\nchecks:\n  - id: a\n    kind: accuracy\n   min: 0.5\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert not isinstance(caught.value, PolicyValidationError)
    assert caught.value.path == str(path)
    assert "not valid YAML (line 5, column 4)" in caught.value.message


def test_duplicate_yaml_keys_are_refused(write_policy: WritePolicy) -> None:
    with pytest.raises(PolicyError, match=r"line 2.*duplicate key"):
        load_policy(write_policy("version: 1\nversion: 1\n"))


def test_non_utf8_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: 1\nname: café\n".encode("latin-1"))
    with pytest.raises(PolicyError, match=r"not UTF-8 text \(byte 20\)") as caught:
        load_policy(path)
    assert caught.value.path == str(path)


def test_oversized_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("version: 1\n" + "#" * MAX_POLICY_BYTES)
    with pytest.raises(PolicyError, match=rf"the limit is {MAX_POLICY_BYTES}"):
        load_policy(path)


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ["version: 1", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]" for level in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")  # 10**10 values once expanded

    started = time.perf_counter()
    with pytest.raises(PolicyError, match="aliases are expanded"):
        load_policy(path)
    assert time.perf_counter() - started < 2.0


def test_yaml_never_constructs_python_objects(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "tag.yaml"
    path.write_text(
        f"version: 1\nname: !!python/object/apply:os.system ['touch {marker}']\n"
        "checks:\n  - {id: a, kind: accuracy, min: 0.5}\n"
    )
    with pytest.raises(PolicyError):
        load_policy(path)
    assert not marker.exists()


def test_missing_file_and_directory_are_policy_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(tmp_path / "absent.yaml")
    with pytest.raises(PolicyError, match="found a directory"):
        load_policy(tmp_path)


def test_read_policy_file_validates_without_resolving_extends(write_policy: WritePolicy) -> None:
    path = write_policy("version: 1\nextends: [missing.yaml]\n")
    policy_file = read_policy_file(path)
    assert policy_file.document.extends == ["missing.yaml"]
    assert policy_file.document.checks == []


def test_a_field_named_like_its_kind_is_located(write_policy: WritePolicy) -> None:
    # The corruption kind has a ``corruption`` field, the same name as pydantic's discriminator tag.
    path = write_policy(
        "version: 1\nchecks:\n  - id: a\n    kind: corruption\n    corruption: jpg\n    min: 0.5\n"
    )
    problem = only_problem(path)
    assert (problem.position.line, problem.position.column, problem.field) == (5, 5, "checks[0].corruption")
    assert "'jpeg'" in problem.message and "found 'jpg'" in problem.message


def test_deeply_nested_brackets_are_refused_quickly(tmp_path: Path) -> None:
    # the YAML parser is quadratic in flow nesting: 400k brackets took seconds before the recursion limit
    path = tmp_path / "deep.yaml"
    path.write_text("version: 1\nname: " + "[" * 400_000 + "]" * 400_000 + "\n")
    started = time.perf_counter()
    with pytest.raises(PolicyError, match=r"brackets nest more than 64 levels deep \(line 2\)"):
        load_policy(path)
    assert time.perf_counter() - started < 1.0


def test_moderate_nesting_reaches_validation(write_policy: WritePolicy) -> None:
    problem = only_problem(write_policy("version: 1\nname: " + "[" * 30 + "]" * 30 + "\n"))
    assert (problem.field, problem.position.line) == ("name", 2)


def test_a_value_fitting_no_alternative_is_one_problem(write_policy: WritePolicy) -> None:
    path = write_policy(
        "version: 1\nchecks:\n  - id: a\n    kind: attribution\n    metric: roi_mass\n    baseline: blurr\n"
        "    min: 0.5\n"
    )
    problem = only_problem(path)
    assert (problem.position.line, problem.position.column, problem.field) == (6, 5, "checks[0].baseline")
    assert "'zero'" in problem.message and "valid number" in problem.message


def test_unknown_keys_named_like_types_are_still_named(write_policy: WritePolicy) -> None:
    path = write_policy(
        "version: 1\nchecks:\n  - id: a\n    kind: adversarial\n    epsilon: 0.1\n    int: 2\n    min: 0.5\n"
    )
    problem = only_problem(path)
    assert (problem.position.line, problem.field) == (6, "checks[0].int")


def test_a_non_string_key_is_located(write_policy: WritePolicy) -> None:
    problem = only_problem(write_policy("version: 1\n12: x\n"))
    assert problem.position.line == 2 and "Keys should be strings" in problem.message


def test_an_unreadable_file_is_a_policy_error(
    write_policy: WritePolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_policy("version: 1\n")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(PolicyError, match="cannot read the policy file: Permission denied") as caught:
        load_policy(path)
    assert caught.value.path == str(path.resolve())


def test_a_top_level_kind_key_does_not_hide_other_locations(write_policy: WritePolicy) -> None:
    path = write_policy("version: 1\nkind: checks\nchecks:\n  - id: a\n    kind: accuracy\n    mni: 0.5\n")
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(path)
    assert sorted(problem.field for problem in caught.value.problems) == ["checks[0].mni", "kind"]
