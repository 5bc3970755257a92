"""gate policy explain: the resolved policy in plain language."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner

from gate.attacks.catalogue import CATALOGUE, masking_diagnosable
from gate.cli import main
from gate.policy import load_policy
from gate.policy.plain_language import explain_policy, fraction_text, number_text

from .helpers import ATTACK_POLICY

TODAY = dt.date(2026, 11, 27)

BASE = """\
version: 1
name: base
checks:
  - id: clean-accuracy
    kind: accuracy
    min: 0.9
"""

RELEASE = """\
version: 1
name: release
description: What we ship to production.
extends: [base.yaml]
samples: 1000
checks:
  - id: pgd-8
    kind: adversarial
    attack: autoattack
    epsilon: 8/255
    queries: 2000
    min: 0.4
    max_drop: 0.02
  - id: blur
    kind: corruption
    corruption: gaussian_blur
    level: 4
    min: 0.7
    severity: warn
  - id: deletion
    kind: attribution
    metric: deletion_auc
    max: 0.2
waivers:
  - check: blur
    reason: retraining with blur augmentation
    approved_by: ana
    expires: 2026-12-31
  - check: pgd-8
    reason: until the robust model lands
    approved_by: bob
    expires: 2026-11-01
"""


@pytest.fixture
def release(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text(BASE)
    path = tmp_path / "release.yaml"
    path.write_text(RELEASE)
    return path


def explain(path: Path, today: dt.date = TODAY) -> str:
    return explain_policy(load_policy(path), today)


def test_inherited_checks_are_explained_with_where_they_are_written(release: Path) -> None:
    text = explain(release)
    assert "Policy 'release'" in text and "What we ship to production." in text
    assert "which extends" in text and "base.yaml" in text
    assert "clean-accuracy (accuracy): blocks the release if it fails." in text
    assert "at least 0.9 (90%)" in text
    assert "base.yaml:4" in text and "release.yaml:7" in text


def test_the_budget_is_given_as_fraction_and_decimal_with_norm_attack_and_steps(release: Path) -> None:
    text = explain(release)
    assert "ε = 8/255 ≈ 0.03137" in text
    assert "L∞ norm" in text
    assert "Attack: AutoAttack (Croce & Hein 2020), 100 steps (the attack's default), 2000 queries," in text
    assert "How it attacks: The standard ensemble: APGD-CE, APGD-T, FAB-T and Square" in text


def test_gradient_masking_names_the_attack_it_diagnoses(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        BASE + "  - id: masking\n    kind: gradient_masking\n    epsilon: 4/255\n    attack: apgd-ce\n"
    )
    text = explain(path)
    assert "white-box evaluation with APGD-CE" in text
    assert "ε = 4/255 ≈ 0.01569" in text and "on the first 256 samples" in text


def test_how_thresholds_are_judged_is_spelled_out(release: Path) -> None:
    text = explain(release)
    assert "95% confidence bound" in text
    assert "the 95% lower confidence bound of robust accuracy is at least 0.4 (40%)" in text
    assert "the 95% upper confidence bound of deletion auc is at most 0.2" in text
    assert "lower is better" in text
    assert "fell by more than 0.02" in text
    assert "at most 1000 evaluation samples" in text


def test_without_confidence_point_values_are_compared(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(BASE + "confidence: null\n")
    text = explain(path)
    assert "the measured value itself" in text
    assert "Passes only if the measured accuracy is at least 0.9" in text


def test_severity_warn_is_said_not_to_block(release: Path) -> None:
    assert "blur (corruption): only warns if it fails (does not block)." in explain(release)
    assert "gaussian blur at severity 4 of 5" in explain(release)


def test_waivers_show_their_expiry_and_whether_they_already_expired(release: Path) -> None:
    text = explain(release)
    assert "blur: a failure does not block until 2026-12-31 inclusive (34 days left)." in text
    assert "approved by ana: retraining with blur augmentation" in text
    assert "pgd-8: EXPIRED on 2026-11-01 (26 days ago)" in text
    assert "last day today" in explain(release, dt.date(2026, 12, 31))


def test_no_waivers_is_said_plainly(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(BASE)
    assert "Waivers: none" in explain(path)


def test_builtin_policies_are_named_as_such() -> None:
    assert "From builtin:baseline." in explain_policy(load_policy("builtin:baseline"), TODAY)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(8 / 255, "8/255"), (5 / 255, "5/255"), (0.5, "1/2"), (0.1, "1/10"), (0.123456789, None), (2.0, None)],
)
def test_fractions_are_recognised(value: float, expected: str | None) -> None:
    assert fraction_text(value) == expected


def test_number_text_gives_fraction_and_decimal() -> None:
    assert number_text(4 / 255) == "4/255 ≈ 0.01569"
    assert number_text(0.123456789) == "0.1235"


def test_cli_prints_the_explanation(release: Path) -> None:
    result = CliRunner().invoke(main, ["policy", "explain", str(release)])
    assert result.exit_code == 0, result.output
    assert "ε = 8/255 ≈ 0.03137" in result.output


def test_cli_rejects_an_invalid_policy_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nchecks:\n  - id: x\n    kind: accuracy\n    mni: 0.9\n")
    result = CliRunner().invoke(main, ["policy", "explain", str(path)])
    assert result.exit_code == 2


@pytest.mark.parametrize("attack", list(CATALOGUE))
def test_cli_explains_every_catalogue_attack(tmp_path: Path, attack: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(ATTACK_POLICY.format(attack=attack))
    result = CliRunner().invoke(main, ["policy", "explain", str(path)])
    assert result.exit_code == 0, result.output
    info = CATALOGUE[attack]
    assert f"Attack: {info.summary}, " in result.output
    assert f"How it attacks: {info.description}" in result.output


@pytest.mark.parametrize("attack", masking_diagnosable())
def test_cli_explains_every_attack_gradient_masking_diagnoses(tmp_path: Path, attack: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        BASE + f"  - id: masking\n    kind: gradient_masking\n    epsilon: 4/255\n    attack: {attack}\n"
    )
    result = CliRunner().invoke(main, ["policy", "explain", str(path)])
    assert result.exit_code == 0, result.output
    assert f"white-box evaluation with {CATALOGUE[attack].summary}" in result.output


@pytest.mark.parametrize(
    ("attack", "options", "effort"),
    [
        ("fgsm", "", "a single step, untargeted"),
        (
            "pgd",
            "steps: 40\n    restarts: 3\n    step_size: 1/255\n",
            "40 steps, 3 restarts, step size 1/255",
        ),
        ("apgd-dlr", "", "100 steps (the attack's default), 1 restart, targeted"),
        ("fab", "targeted: true\n", "100 steps (the attack's default), 1 restart, targeted"),
        ("square", "queries: 300\n", "1 restart, 300 queries, untargeted"),
    ],
)
def test_the_attack_line_shows_only_what_the_attack_reads(
    tmp_path: Path, attack: str, options: str, effort: str
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(ATTACK_POLICY.format(attack=attack) + (f"    {options}" if options else ""))
    assert effort in explain(path)


def test_explain_states_the_task_or_that_it_is_inferred(tmp_path):
    from conftest import write_policy

    from gate.policy import load_policy
    from gate.policy.plain_language import explain_policy

    body = "version: 1\n{task}checks:\n  - {{id: a, kind: accuracy, min: 0.5}}\n"
    inferred = explain_policy(load_policy(write_policy(tmp_path / "a.yaml", body.format(task=""))))
    assert "inferred from the data" in inferred and "tabular_classification" in inferred
    named = explain_policy(
        load_policy(write_policy(tmp_path / "b.yaml", body.format(task="task: tabular_classification\n")))
    )
    assert "judged as tabular_classification: A classifier of feature vectors" in named


def test_a_features_section_is_explained_with_its_rules_and_standardised_budgets(tmp_path: Path) -> None:
    path = tmp_path / "credit.yaml"
    path.write_text(
        "version: 1\nname: credit\nextends: [builtin:tabular-classifier]\nfeatures:\n  label: defaulted\n"
        "  columns:\n    - {name: age, type: integer, mutable: false}\n    - {name: loan, max_change: 500}\n"
        "  one_hot:\n    - {name: housing, columns: [own, rent]}\n  constraints:\n    - total == loan + interest\n",
        encoding="utf-8",
    )
    text = explain(path)
    assert "Inputs lie in" not in text and "each in its own range" in text
    assert "The label is the data's column 'defaulted'." in text
    assert "Immutable (never changed by an attacker or the noise corruptions): age." in text
    assert "age (integer)" in text and "exactly one of own, rent is 1" in text
    assert "loan changes by at most 500 in its own units." in text
    assert "Constraint: total == loan + interest" in text
    assert "L∞ norm on standardised features" in text
