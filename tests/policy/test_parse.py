"""Reading one policy file: what the format accepts, and a located, specific message for what it refuses."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from gate.errors import PolicyError
from gate.policy import PolicyValidationError, load_policy, read_policy_file
from gate.policy.source import MAX_POLICY_BYTES
from gate.policy.specs import (
    AccuracySpec,
    AdversarialSpec,
    AttributionSpec,
    CorruptionSpec,
    ExportParitySpec,
    GradientMaskingSpec,
)

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
    attack: pgd
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
        "pgd",
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
        (1, 1, "version", "expected the number 1, the only version of the policy format; found 2"),
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
    real_open = os.open

    def refuse(name: str, flags: int, *args: int) -> int:
        if Path(name) == path.resolve():
            raise PermissionError(13, "Permission denied", name)
        return real_open(name, flags, *args)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(PolicyError, match="cannot read the policy file: Permission denied") as caught:
        load_policy(path)
    assert caught.value.path == str(path.resolve())


def test_a_top_level_kind_key_does_not_hide_other_locations(write_policy: WritePolicy) -> None:
    path = write_policy("version: 1\nkind: checks\nchecks:\n  - id: a\n    kind: accuracy\n    mni: 0.5\n")
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(path)
    assert sorted(problem.field for problem in caught.value.problems) == ["checks[0].mni", "kind"]


# --------------------------------------------------------------------- values that cannot mean anything
def _check(fields: str) -> str:
    return f"version: 1\nchecks:\n  - id: a\n{fields}"


MEANINGLESS = {
    "accuracy min above 1": (
        _check("    kind: accuracy\n    min: 1.5\n"),
        (5, 5, "checks[0].min", "expected a number in [0, 1]: accuracy is a proportion; found 1.5"),
    ),
    "accuracy min as a percentage": (
        _check("    kind: accuracy\n    min: 95\n"),
        (5, 5, "checks[0].min", "found 95 (if that is a percentage, write 0.95)"),
    ),
    "negative accuracy max": (
        _check("    kind: accuracy\n    max: -0.1\n"),
        (5, 5, "checks[0].max", "expected a number in [0, 1]: accuracy is a proportion; found -0.1"),
    ),
    "max_drop beyond the range": (
        _check("    kind: accuracy\n    max_drop: 1.5\n"),
        (5, 5, "checks[0].max_drop", "expected at most 1: accuracy is a proportion in [0, 1]"),
    ),
    "robust accuracy": (
        _check("    kind: adversarial\n    epsilon: 0.1\n    min: 2\n"),
        (6, 5, "checks[0].min", "robust_accuracy is a proportion; found 2"),
    ),
    "agreement": (
        _check("    kind: export_parity\n    min: 1.01\n"),
        (5, 5, "checks[0].min", "agreement is a proportion"),
    ),
    "corrupted accuracy": (
        _check("    kind: corruption\n    corruption: jpeg\n    max: 7\n"),
        (6, 5, "checks[0].max", "corrupted_accuracy is a proportion"),
    ),
    "pointing game": (
        _check("    kind: attribution\n    metric: pointing_game\n    min: 1.2\n"),
        (6, 5, "checks[0].min", "pointing_game is a proportion"),
    ),
    "roi mass": (
        _check("    kind: attribution\n    metric: roi_mass\n    min: -0.5\n"),
        (6, 5, "checks[0].min", "expected a number in [0, 1]: roi_mass is a share of the relevance"),
    ),
    "rank correlation": (
        _check("    kind: attribution\n    metric: randomization_similarity\n    max: -1.5\n"),
        (
            6,
            5,
            "checks[0].max",
            "expected a number in [-1, 1]: randomization_similarity is a rank correlation",
        ),
    ),
    "negative sensitivity": (
        _check("    kind: attribution\n    metric: max_sensitivity\n    max: -1\n"),
        (6, 5, "checks[0].max", "expected a number of at least 0: max_sensitivity is a relative change"),
    ),
    "negative findings": (
        _check("    kind: gradient_masking\n    epsilon: 0.1\n    max: -1\n"),
        (6, 5, "checks[0].max", "expected a number of at least 0: findings is a count of findings"),
    ),
    "epsilon 1e-300": (
        _check("    kind: adversarial\n    epsilon: 1e-300\n    min: 0.5\n"),
        (5, 5, "checks[0].epsilon", "found 1e-300, which float32 rounds to 0"),
    ),
    "subnormal epsilon": (
        _check("    kind: adversarial\n    epsilon: 1e-40\n    min: 0.5\n"),
        (5, 5, "checks[0].epsilon", "found 1e-40, which float32 rounds to the subnormal 1e-40"),
    ),
    "epsilon past float32": (
        _check("    kind: adversarial\n    epsilon: 1e39\n    min: 0.5\n"),
        (5, 5, "checks[0].epsilon", "expected at most 3.403e+38, the largest float32; found 1e+39"),
    ),
    "tiny step size": (
        _check("    kind: adversarial\n    epsilon: 0.1\n    step_size: 1e-50\n    min: 0.5\n"),
        (6, 5, "checks[0].step_size", "which float32 rounds to 0"),
    ),
    "tiny masking epsilon": (
        _check("    kind: gradient_masking\n    epsilon: 5e-324\n"),
        (
            5,
            5,
            "checks[0].epsilon",
            "expected a size that float32 holds as a normal number (at least 1.175e-38)",
        ),
    ),
    "tiny sweep epsilon": (
        _check("    kind: gradient_masking\n    epsilon: 0.1\n    sweep: [0.05, 1e-45]\n"),
        (6, 19, "checks[0].sweep[1]", "which float32 rounds to"),
    ),
    "tiny noise": (
        _check("    kind: export_parity\n    min: 0.9\n    noise: 1e-39\n"),
        (6, 5, "checks[0].noise", "found 1e-39, which float32 rounds to the subnormal"),
    ),
    "tiny radius": (
        _check("    kind: attribution\n    metric: max_sensitivity\n    radius: 1/1e300\n    max: 1\n"),
        (6, 5, "checks[0].radius", "found 1e-300, which float32 rounds to 0"),
    ),
    "blank reason": (
        "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\nwaivers:\n  - check: a\n"
        "    reason: '   '\n    approved_by: me\n    expires: 2030-01-01\n",
        (6, 5, "waivers[0].reason", "expected text that says something, found only whitespace ('   ')"),
    ),
    "empty approver": (
        "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\nwaivers:\n  - check: a\n"
        "    reason: r\n    approved_by: ''\n    expires: 2030-01-01\n",
        (7, 5, "waivers[0].approved_by", "expected text that says something, found an empty text"),
    ),
    "tab-only approver": (
        "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\nwaivers:\n  - check: a\n"
        '    reason: r\n    approved_by: "\\t\\n"\n    expires: 2030-01-01\n',
        (7, 5, "waivers[0].approved_by", "found only whitespace ('\\t\\n')"),
    ),
    "integer expiry": (
        "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\nwaivers:\n  - check: a\n"
        "    reason: r\n    approved_by: me\n    expires: 20270331\n",
        (
            8,
            5,
            "waivers[0].expires",
            "expected a valid date YYYY-MM-DD (such as 2027-03-31), found the number 20270331",
        ),
    ),
    "float expiry": (
        "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\nwaivers:\n  - check: a\n"
        "    reason: r\n    approved_by: me\n    expires: 1.8e9\n",
        (8, 5, "waivers[0].expires", "found the number 1800000000.0"),
    ),
    "expiry with a time": (
        "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\nwaivers:\n  - check: a\n"
        "    reason: r\n    approved_by: me\n    expires: 2027-03-31 12:00:00\n",
        (8, 5, "waivers[0].expires", "found a date and time (2027-03-31T12:00:00); write the day only"),
    ),
    "expiry text that is no day": (
        "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\nwaivers:\n  - check: a\n"
        "    reason: r\n    approved_by: me\n    expires: '2027-02-30'\n",
        (8, 5, "waivers[0].expires", "found '2027-02-30', which is no day"),
    ),
    "expiry in another format": (
        "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\nwaivers:\n  - check: a\n"
        "    reason: r\n    approved_by: me\n    expires: 31/03/2027\n",
        (8, 5, "waivers[0].expires", "found '31/03/2027'"),
    ),
}


@pytest.mark.parametrize("case", list(MEANINGLESS), ids=list(MEANINGLESS))
def test_a_value_that_cannot_mean_anything_is_refused_where_it_is_written(
    write_policy: WritePolicy, case: str
) -> None:
    text, (line, column, field, phrase) = MEANINGLESS[case]
    path = write_policy(text)

    problem = only_problem(path)

    assert (problem.position.line, problem.position.column, problem.field) == (line, column, field)
    assert phrase in problem.message
    assert problem.render().startswith(f"{path}:{line}:{column}: {field}: expected")


@pytest.mark.parametrize(
    "fields",
    [
        "    kind: accuracy\n    min: 0\n    max: 1\n    max_drop: 1\n",
        "    kind: attribution\n    metric: randomization_similarity\n    max: -1\n",
        "    kind: attribution\n    metric: max_sensitivity\n    max: 1000\n",
        "    kind: adversarial\n    epsilon: 1.2e-38\n    step_size: 3e38\n    min: 0\n",
        "    kind: export_parity\n    min: 1\n    noise: 0\n",
        "    kind: model_sanity\n    max: 3\n",
    ],
)
def test_values_at_the_edges_of_what_means_something_are_accepted(
    write_policy: WritePolicy, fields: str
) -> None:
    assert load_policy(write_policy(_check(fields))).policy.checks


def test_an_impossible_unquoted_date_is_located(write_policy: WritePolicy) -> None:
    # YAML itself reads 2027-02-30 as a date, and datetime refuses it without saying where
    path = write_policy(
        "version: 1\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\nwaivers:\n  - check: a\n"
        "    reason: r\n    approved_by: me\n    expires: 2027-02-30\n"
    )
    problem = only_problem(path)
    assert (problem.position.line, problem.position.column, problem.field) == (8, 5, "waivers[0].expires")
    assert "found '2027-02-30', which is no day" in problem.message


EVERY_PROBLEM = """\
version: 1
checks:
  - id: acc
    kind: accuracy
    min: 1.5
  - id: acc
    kind: accuracy
    min: 0.9
    max: 0.1
  - id: adv
    kind: adversarial
    epsilon: 8/0
    min: 0.5
  - id: acc
    kind: accuracy
    mni: 0.3
waivers:
  - check: nothere
    reason: r
    approved_by: me
    expires: 2020-13-45
"""


def _located(path: Path) -> list[tuple[int, int, str, str]]:
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(path)
    return [(p.position.line, p.position.column, p.field, p.message) for p in caught.value.problems]


def test_every_problem_of_a_file_is_reported_in_one_run(write_policy: WritePolicy) -> None:
    problems = _located(write_policy(EVERY_PROBLEM))
    assert [problem[:3] for problem in problems] == [
        (5, 5, "checks[0].min"),  # 1.5 on a proportion can never be met
        (6, 5, "checks[1]"),  # min > max
        (6, 5, "checks[1].id"),  # duplicate id
        (12, 5, "checks[2].epsilon"),  # 8/0
        (14, 5, "checks[3].id"),  # the third use of the id
        (16, 5, "checks[3].mni"),  # a typo
        (18, 5, "waivers"),  # a waiver naming no check
        (21, 5, "waivers[0].expires"),  # no day of the calendar (YAML's own date type refused it)
    ]
    messages = [problem[3] for problem in problems]
    assert messages[2] == messages[4] == "check id 'acc' is used twice; ids must be unique within a file"
    assert "names check 'nothere'" in messages[6] and "found '2020-13-45', which is no day" in messages[7]


def test_an_unknown_builtin_is_reported_beside_the_file_s_own_problems(write_policy: WritePolicy) -> None:
    text = EVERY_PROBLEM.replace("version: 1\n", "version: 1\nextends: [builtin:nope]\n")
    problems = _located(write_policy(text))
    assert (
        problems[0][:3] == (2, 11, "extends[0]")
        and "unknown built-in policy 'builtin:nope'" in problems[0][3]
    )
    # the other problems, a line lower; not the waiver, which may name a check of the unknown parent
    assert [problem[2] for problem in problems[1:]] == [
        "checks[0].min", "checks[1]", "checks[1].id", "checks[2].epsilon", "checks[3].id", "checks[3].mni",
        "waivers[0].expires",
    ]  # fmt: skip


def test_a_waiver_is_not_called_orphan_while_an_extended_file_is_unread(write_policy: WritePolicy) -> None:
    # the missing parent may define the waived check: only the missing file is reported
    path = write_policy(
        "version: 1\nextends: [missing.yaml]\nchecks:\n  - {id: a, kind: accuracy, min: 0.5}\n"
        "waivers:\n  - {check: inherited, reason: r, approved_by: me, expires: 2030-01-01}\n"
    )
    problem = only_problem(path)
    assert problem.field == "extends[0]" and "was not found" in problem.message


def test_problems_of_an_extended_file_are_reported_with_the_extending_file_s(
    write_policy: WritePolicy,
) -> None:
    parent = write_policy("version: 1\nchecks:\n  - {id: a, kind: accuracy, mni: 0.5}\n", name="base.yaml")
    path = write_policy("version: 1\nextends: [base.yaml]\nchecks:\n  - {id: b, kind: accuracy, min: 2}\n")
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(path)
    assert [(p.path.name, p.field) for p in caught.value.problems] == [
        ("policy.yaml", "checks[0].min"),
        ("base.yaml", "checks[0].mni"),
    ]
    assert caught.value.problems[1].path == parent.resolve()


def test_expiry_dates_written_as_json_text_are_dates(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    waiver = {"check": "a", "reason": "r", "approved_by": "me", "expires": "2027-03-31"}
    path.write_text(
        json.dumps(
            {"version": 1, "checks": [{"id": "a", "kind": "accuracy", "min": 0.5}], "waivers": [waiver]}
        )
    )
    (loaded,) = load_policy(path).policy.waivers
    assert loaded.expires.isoformat() == "2027-03-31"


# --------------------------------------------------------------------- messages never echo a file's text
def test_a_file_without_version_is_judged_by_its_version_alone(write_policy: WritePolicy) -> None:
    # any file can arrive through extends (where --policy-root allows): its keys and values stay unquoted
    path = write_policy("DB_PASSWORD: hunter2\nAPI_KEY: sk-live-123\nseed: hunter3\n")
    problem = only_problem(path)
    assert (problem.position.line, problem.position.column, problem.field) == (1, 1, "version")
    for secret in ("hunter2", "hunter3", "sk-live", "DB_PASSWORD", "API_KEY"):
        assert secret not in problem.render()


@pytest.mark.parametrize(
    ("version", "found"),
    [("'hunter2'", "found a str"), ("[a, b]", "found a CommentedSeq"), ("2.5", "found 2.5")],
)
def test_a_wrong_version_quotes_only_a_number(write_policy: WritePolicy, version: str, found: str) -> None:
    problem = only_problem(write_policy(f"version: {version}\nname: x\n"))
    assert problem.field == "version" and problem.message.endswith(found)


def test_unknown_keys_are_quoted_short_and_escaped(write_policy: WritePolicy) -> None:
    long_key, odd_key = "k" * 500, "evil\x1b[2J\u202ekey"
    path = write_policy(
        f"version: 1\n{long_key}: 1\n{json.dumps(odd_key)}: 2\nchecks:\n  - {{id: a, kind: accuracy, min: 0.5}}\n"
    )
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(path)
    fields = [problem.field for problem in caught.value.problems]
    assert fields == [f"'{'k' * 40}'… (500 characters)", repr(odd_key)]
    rendered = str(caught.value)
    assert "\x1b" not in rendered and "\u202e" not in rendered and long_key not in rendered


def test_found_values_are_cut_and_escaped(write_policy: WritePolicy) -> None:
    value = "s" * 1000 + "\x1b[31m"
    problem = only_problem(
        write_policy(_check(f"    kind: accuracy\n    min: 0.5\n    severity: {json.dumps(value)}\n"))
    )
    assert problem.field == "checks[0].severity"
    assert "(found 'ssss" in problem.message and "(1005 characters)" in problem.message
    assert len(problem.message) < 200 and "\x1b" not in problem.message


def test_a_duplicate_key_quotes_the_key_but_not_the_values(write_policy: WritePolicy) -> None:
    path = write_policy("version: 1\ntoken: first-secret\ntoken: second-secret\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert "found duplicate key 'token'" in caught.value.message and "line 3" in caught.value.message
    assert "secret" not in caught.value.render()


def test_a_tag_is_quoted_short(write_policy: WritePolicy) -> None:
    path = write_policy("version: 1\nname: !" + "t" * 300 + " x\n")
    with pytest.raises(PolicyError, match="YAML tags are not allowed") as caught:
        load_policy(path)
    assert "t" * 100 not in caught.value.message and "(301 characters)" in caught.value.message


def test_a_file_of_many_problems_renders_the_first_fifty(write_policy: WritePolicy) -> None:
    keys = "".join(f"key{index}: {index}\n" for index in range(500))
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(write_policy(f"version: 1\n{keys}"))
    assert len(caught.value.problems) == 500
    assert str(caught.value).count("unknown key") == 50 and "… and 450 more" in str(caught.value)


def test_a_value_where_a_mapping_belongs_is_refused_without_naming_gate_s_classes(
    write_policy: WritePolicy,
) -> None:
    path = write_policy(
        "version: 1\ninput: 5\nchecks:\n  - 5\n  - {id: a, kind: accuracy, min: 0.5}\nwaivers: [x]\n"
    )
    with pytest.raises(PolicyValidationError) as caught:
        load_policy(path)
    rendered = [problem.render().removeprefix(f"{path}:") for problem in caught.value.problems]
    assert rendered == [
        "2:1: input: expected a mapping of keys and values (found 5)",
        "4:5: checks[0]: expected a mapping of keys and values (found 5)",
        "6:11: waivers[0]: expected a mapping of keys and values (found 'x')",
    ]
