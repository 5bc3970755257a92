"""gate policy diff: every kind of change is marked stricter, looser or neutral; exit 1 when looser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gate.attacks.catalogue import CATALOGUE
from gate.cli import main
from gate.policy.diff import (
    CHECK_RULES,
    IDENTITY_FIELDS,
    KIND_RULES,
    SETTING_RULES,
    Change,
    diff_policies,
    is_looser,
)
from gate.policy.features import FeatureSchema
from gate.policy.model import Policy
from gate.policy.specs import ALL_CHECK_SPECS, kind_of

from .helpers import ATTACK_POLICY

ADVERSARIAL: dict[str, Any] = {
    "id": "pgd",
    "kind": "adversarial",
    "attack": "pgd",
    "epsilon": 8 / 255,
    "steps": 20,
    "restarts": 2,
    "min": 0.4,
    "max_drop": 0.02,
}
WAIVER: dict[str, Any] = {
    "check": "pgd",
    "reason": "retraining",
    "approved_by": "ana",
    "expires": "2026-12-31",
}


def make_policy(checks: list[dict[str, Any]] | None = None, **settings: Any) -> Policy:
    return Policy.model_validate({"name": "release", "checks": checks or [ADVERSARIAL], **settings})


def changed_check(**changes: Any) -> list[Change]:
    return diff_policies(make_policy(), make_policy([{**ADVERSARIAL, **changes}]))


def only(changes: list[Change]) -> Change:
    assert len(changes) == 1, changes
    return changes[0]


@pytest.mark.parametrize(
    ("changes", "field", "direction"),
    [
        ({"epsilon": 4 / 255}, "epsilon", "looser"),
        ({"epsilon": 16 / 255}, "epsilon", "stricter"),
        ({"min": 0.3}, "min", "looser"),
        ({"min": 0.5}, "min", "stricter"),
        ({"min": None}, "min", "looser"),
        ({"max_drop": 0.05}, "max_drop", "looser"),
        ({"max_drop": 0.01}, "max_drop", "stricter"),
        ({"severity": "warn"}, "severity", "looser"),
        ({"steps": 10}, "steps", "looser"),
        ({"steps": 50}, "steps", "stricter"),
        ({"steps": None}, "steps", "neutral"),
        ({"restarts": 1}, "restarts", "looser"),
        ({"restarts": 5}, "restarts", "stricter"),
        ({"targeted": True}, "targeted", "looser"),
        ({"norm": "l2"}, "norm", "neutral"),
        ({"description": "reworded"}, "description", "neutral"),
        ({"timeout": 60}, "timeout", "neutral"),
        ({"examples": 8}, "examples", "neutral"),
    ],
)
def test_adversarial_changes(changes: dict[str, Any], field: str, direction: str) -> None:
    change = only(changed_check(**changes))
    assert (change.subject, change.field, change.direction) == ("check pgd", field, direction)


def test_stronger_attack_to_weaker_autoattack_to_pgd_is_looser() -> None:
    before = make_policy([{**ADVERSARIAL, "attack": "autoattack", "restarts": 1}])
    change = only(diff_policies(before, make_policy([{**ADVERSARIAL, "restarts": 1}])))
    assert (change.old, change.new, change.direction) == ("autoattack", "pgd", "looser")


def test_fewer_queries_are_looser() -> None:
    square = {
        "id": "square",
        "kind": "adversarial",
        "attack": "square",
        "epsilon": 0.1,
        "queries": 1000,
        "min": 0.4,
    }
    change = only(diff_policies(make_policy([square]), make_policy([{**square, "queries": 500}])))
    assert (change.field, change.direction) == ("queries", "looser")


def attack_check(attack: str) -> dict[str, Any]:
    """An adversarial check that sets nothing the attack might not read, so any attack can replace any."""
    return {"id": "robust", "kind": "adversarial", "attack": attack, "epsilon": 8 / 255, "min": 0.4}


@pytest.mark.parametrize(
    ("old", "new", "direction"),
    [
        ("pgd", "fgsm", "looser"),
        ("pgd", "apgd-ce", "stricter"),
        ("pgd", "fab", "stricter"),
        ("pgd", "autoattack", "stricter"),
        ("pgd", "square", "neutral"),
        ("apgd-ce", "apgd-dlr", "neutral"),
        ("apgd-dlr", "fab", "neutral"),
        ("fab", "autoattack", "stricter"),
        ("square", "autoattack", "stricter"),
        ("autoattack", "square", "looser"),
        ("fgsm", "square", "neutral"),
    ],
)
def test_attack_changes_follow_the_catalogue_strength(old: str, new: str, direction: str) -> None:
    change = only(diff_policies(make_policy([attack_check(old)]), make_policy([attack_check(new)])))
    assert (change.field, change.old, change.new, change.direction) == ("attack", old, new, direction)


OPPOSITE = {"stricter": "looser", "looser": "stricter", "neutral": "neutral"}


@pytest.mark.parametrize("new", list(CATALOGUE))
@pytest.mark.parametrize("old", list(CATALOGUE))
def test_every_pair_of_catalogue_attacks_compares_both_ways(old: str, new: str) -> None:
    forward = diff_policies(make_policy([attack_check(old)]), make_policy([attack_check(new)]))
    backward = diff_policies(make_policy([attack_check(new)]), make_policy([attack_check(old)]))
    if old == new:
        assert forward == backward == []
        return
    assert OPPOSITE[only(forward).direction] == only(backward).direction


@pytest.mark.parametrize("attack", list(CATALOGUE))
def test_cli_diffs_every_catalogue_attack(tmp_path: Path, attack: str) -> None:
    """From the weakest attack to any, and from any to AutoAttack, is never looser: exit 0."""
    paths = {}
    for name in ("fgsm", attack, "autoattack"):
        paths[name] = tmp_path / f"{name}.yaml"
        paths[name].write_text(ATTACK_POLICY.format(attack=name))
    for old, new in (("fgsm", attack), (attack, "autoattack")):
        result = CliRunner().invoke(main, ["policy", "diff", str(paths[old]), str(paths[new])])
        assert result.exit_code == 0, result.output
        assert old == new or f"attack {old} → {new}" in result.output


def test_max_thresholds_are_looser_when_higher() -> None:
    check = {"id": "ig", "kind": "attribution", "metric": "deletion_auc", "max": 0.2}
    before = make_policy([check])
    assert only(diff_policies(before, make_policy([{**check, "max": 0.3}]))).direction == "looser"
    assert only(diff_policies(before, make_policy([{**check, "max": 0.1}]))).direction == "stricter"
    assert only(diff_policies(before, make_policy([{**check, "steps": 8}]))).direction == "neutral"
    assert only(diff_policies(before, make_policy([{**check, "method": "saliency"}]))).direction == "neutral"


@pytest.mark.parametrize(
    ("check", "changes", "direction"),
    [
        (
            {"id": "blur", "kind": "corruption", "corruption": "jpeg", "level": 3, "min": 0.7},
            {"level": 2},
            "looser",
        ),
        (
            {"id": "blur", "kind": "corruption", "corruption": "jpeg", "level": 3, "min": 0.7},
            {"level": 5},
            "stricter",
        ),
        ({"id": "gm", "kind": "gradient_masking", "epsilon": 0.03}, {"tolerance": 0.1}, "looser"),
        ({"id": "gm", "kind": "gradient_masking", "epsilon": 0.03}, {"queries": 100}, "looser"),
        ({"id": "gm", "kind": "gradient_masking", "epsilon": 0.03}, {"max": 1}, "looser"),
        ({"id": "gm", "kind": "gradient_masking", "epsilon": 0.03}, {"diagnostic_samples": 64}, "looser"),
        ({"id": "gm", "kind": "gradient_masking", "epsilon": 0.03}, {"attack": "apgd-ce"}, "stricter"),
        (
            {"id": "ms", "kind": "attribution", "metric": "max_sensitivity", "max": 0.2},
            {"radius": 0.05},
            "stricter",
        ),
        ({"id": "ep", "kind": "export_parity", "max_abs_diff": 1e-4}, {"max_abs_diff": 1e-3}, "looser"),
        ({"id": "ep", "kind": "export_parity", "max_abs_diff": 1e-4}, {"noise": 0.01}, "stricter"),
    ],
)
def test_other_kinds(check: dict[str, Any], changes: dict[str, Any], direction: str) -> None:
    assert (
        only(diff_policies(make_policy([check]), make_policy([{**check, **changes}]))).direction == direction
    )


def test_removed_check_is_looser_and_added_check_stricter() -> None:
    extra = {"id": "clean", "kind": "accuracy", "min": 0.9}
    added = only(diff_policies(make_policy(), make_policy([ADVERSARIAL, extra])))
    assert (added.subject, added.direction) == ("check clean", "stricter")
    removed = only(diff_policies(make_policy([ADVERSARIAL, extra]), make_policy()))
    assert (removed.subject, removed.direction) == ("check clean", "looser")


def test_a_changed_kind_is_a_removal_and_an_addition() -> None:
    changes = diff_policies(make_policy(), make_policy([{"id": "pgd", "kind": "accuracy", "min": 0.9}]))
    assert [change.direction for change in changes] == ["looser", "stricter"]


@pytest.mark.parametrize(
    ("before", "after", "direction"),
    [
        ([], [WAIVER], "looser"),
        ([WAIVER], [], "stricter"),
        ([WAIVER], [{**WAIVER, "expires": "2027-06-30"}], "looser"),
        ([WAIVER], [{**WAIVER, "expires": "2026-12-01"}], "stricter"),
        ([WAIVER], [{**WAIVER, "reason": "other words"}], "neutral"),
    ],
)
def test_waivers(before: list[dict], after: list[dict], direction: str) -> None:
    change = only(diff_policies(make_policy(waivers=before), make_policy(waivers=after)))
    assert (change.subject, change.direction) == ("waiver pgd", direction)


@pytest.mark.parametrize(
    ("before", "after", "direction"),
    [
        ({"confidence": 0.95}, {"confidence": 0.9}, "looser"),
        ({"confidence": 0.95}, {"confidence": 0.99}, "stricter"),
        ({"confidence": 0.95}, {"confidence": None}, "looser"),
        ({"samples": 1000}, {"samples": 500}, "looser"),
        ({"samples": 1000}, {"samples": 2000}, "stricter"),
        ({"samples": 1000}, {"samples": None}, "stricter"),
        ({"samples": None}, {"samples": 1000}, "looser"),
        ({"seed": 0}, {"seed": 1}, "neutral"),
        ({"description": "a"}, {"description": "b"}, "neutral"),
        ({"input": {"range": [0, 1]}}, {"input": {"range": [0, 255]}}, "neutral"),
    ],
)
def test_policy_settings(before: dict[str, Any], after: dict[str, Any], direction: str) -> None:
    change = only(diff_policies(make_policy(**before), make_policy(**after)))
    assert (change.subject, change.direction) == ("policy", direction)


@pytest.mark.parametrize("spec", ALL_CHECK_SPECS, ids=kind_of)
def test_every_check_field_has_a_rule(spec: type) -> None:
    """A new policy field needs a decision: does changing it make the gate stricter or looser?"""
    kind = kind_of(spec)
    without_rule = {
        field
        for field in spec.model_fields
        if field not in IDENTITY_FIELDS and field not in CHECK_RULES and (kind, field) not in KIND_RULES
    }
    assert without_rule == set()


def test_every_policy_setting_has_a_rule() -> None:
    settings = set(Policy.model_fields) - {"checks", "waivers"}
    assert settings == set(SETTING_RULES)


def test_identical_policies_have_no_changes() -> None:
    assert diff_policies(make_policy(), make_policy()) == []
    assert not is_looser([])


def test_render_shows_budgets_as_fractions() -> None:
    text = only(changed_check(epsilon=4 / 255)).render()
    assert text == "looser   check pgd: epsilon 8/255 ≈ 0.03137 → 4/255 ≈ 0.01569 (a smaller budget ε)"


POLICY_FILE = """\
version: 1
name: release
checks:
  - id: pgd
    kind: adversarial
    epsilon: {epsilon}
    min: 0.4
"""


def write(tmp_path: Path, name: str, epsilon: str) -> str:
    path = tmp_path / name
    path.write_text(POLICY_FILE.format(epsilon=epsilon))
    return str(path)


def test_cli_exits_1_when_looser(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["policy", "diff", write(tmp_path, "a.yaml", "8/255"), write(tmp_path, "b.yaml", "4/255")]
    )
    assert result.exit_code == 1
    assert "looser   check pgd: epsilon" in result.output


def test_cli_exits_0_when_stricter_or_unchanged(tmp_path: Path) -> None:
    old, new = write(tmp_path, "a.yaml", "4/255"), write(tmp_path, "b.yaml", "8/255")
    assert CliRunner().invoke(main, ["policy", "diff", old, new]).exit_code == 0
    same = CliRunner().invoke(main, ["policy", "diff", old, old])
    assert same.exit_code == 0 and "no changes" in same.output


def test_cli_json(tmp_path: Path) -> None:
    old, new = write(tmp_path, "a.yaml", "8/255"), write(tmp_path, "b.yaml", "4/255")
    result = CliRunner().invoke(main, ["policy", "diff", "--json", old, new])
    changes = json.loads(result.stdout)
    assert changes == [
        {
            "subject": "check pgd",
            "field": "epsilon",
            "old": 8 / 255,
            "new": 4 / 255,
            "direction": "looser",
            "reason": "a smaller budget ε",
        }
    ]


def test_cli_exits_2_for_an_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nchecks: []\n")
    result = CliRunner().invoke(main, ["policy", "diff", write(tmp_path, "a.yaml", "8/255"), str(bad)])
    assert result.exit_code == 2


def test_requiring_weights_is_stricter_and_dropping_the_requirement_looser() -> None:
    stricter = only(diff_policies(make_policy(), make_policy(require_weights=True)))
    assert (stricter.field, stricter.direction) == ("require_weights", "stricter")
    looser = only(diff_policies(make_policy(require_weights=True), make_policy()))
    assert looser.direction == "looser" and "weights it builds itself" in looser.reason


@pytest.mark.parametrize("attack", [name for name, info in CATALOGUE.items() if info.always_targeted])
def test_targeted_on_an_always_targeted_attack_changes_nothing(attack: str) -> None:
    base = {key: value for key, value in ADVERSARIAL.items() if key != "restarts" or attack != "autoattack"}
    old = make_policy([{**base, "attack": attack}])
    new = make_policy([{**base, "attack": attack, "targeted": True}])
    change = only(diff_policies(old, new))
    assert change.field == "targeted" and change.direction == "neutral"
    assert "targeted whatever the policy says" in change.reason


def _with_features(**features: Any) -> Policy:
    return make_policy().model_copy(update={"features": FeatureSchema(**features)})


def test_a_feature_space_that_binds_the_attacker_more_is_looser() -> None:
    free = _with_features(columns=[{"name": "age"}])
    bound = _with_features(columns=[{"name": "age", "mutable": False}], constraints=["a <= b"])
    (change,) = diff_policies(free, bound)
    assert (change.field, change.direction) == ("features", "looser")
    assert "immutable" in change.render() and "1 constraint(s)" in change.render()
    (back,) = diff_policies(bound, free)
    assert back.direction == "stricter"
    mixed = _with_features(columns=[{"name": "age", "mutable": False}])
    assert diff_policies(_with_features(constraints=["a <= b"]), mixed)[0].direction == "neutral"
