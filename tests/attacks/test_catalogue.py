"""The torch-free attack catalogue: it matches the attack classes, the policy's accepted names, the options
each class really reads, the old per-attack defaults (results stay bit-identical) and the docs' table."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gate.attacks as attacks
from gate.attacks.catalogue import (
    CATALOGUE,
    IMAGE_CLASSIFICATION,
    NORMS,
    OPTIONS,
    TABULAR_CLASSIFICATION,
    compare_strength,
    constructor_options,
    masking_diagnosable,
    policy_refusal,
    render_markdown_table,
)
from gate.attacks.feature_space import FeatureThreat, build_feature_space
from gate.attacks.registry import ATTACKS, build_attack
from gate.attacks.threat import NORMS as THREAT_NORMS
from gate.policy.specs import AdversarialSpec, AttackName, GradientMaskingSpec

ROOT = Path(__file__).resolve().parents[2]
BUDGET: dict[str, Any] = {"norm": "linf", "epsilon": 0.1, "bounds": (0.0, 1.0), "seed": 3}


# ------------------------------------------------------------------ catalogue <-> registry <-> policy
def test_the_catalogue_and_the_registry_name_the_same_attacks() -> None:
    assert list(CATALOGUE) == list(ATTACKS)
    assert all(info.name == name for name, info in CATALOGUE.items())


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_each_entry_describes_its_class(name: str) -> None:
    info, cls = CATALOGUE[name], ATTACKS[name]
    assert cls.__name__ == info.class_name and getattr(attacks, info.class_name) is cls
    assert (cls.needs_gradients, cls.supports_targeted) == (info.needs_gradients, info.supports_targeted)


def test_the_policy_accepts_exactly_the_catalogue_names() -> None:
    assert typing.get_args(AttackName) == tuple(CATALOGUE)
    assert typing.get_args(AdversarialSpec.model_fields["attack"].annotation) == tuple(ATTACKS)
    masking = typing.get_args(GradientMaskingSpec.model_fields["attack"].annotation)
    assert masking == masking_diagnosable() == ("pgd", "apgd-ce")
    assert all(ATTACKS[name].needs_gradients for name in masking)


def test_norms_tasks_and_options_use_the_known_words() -> None:
    assert NORMS == THREAT_NORMS
    assert typing.get_args(AdversarialSpec.model_fields["norm"].annotation) == NORMS
    assert set(OPTIONS) <= set(AdversarialSpec.model_fields)
    for info in CATALOGUE.values():
        assert set(info.norms) <= set(NORMS) and info.norms
        assert set(info.tasks) <= {IMAGE_CLASSIFICATION, TABULAR_CLASSIFICATION} and info.tasks
        assert set(info.options) <= set(OPTIONS)
        assert set(info.contains) <= set(CATALOGUE) - {info.name}
        assert info.description.endswith(".") and info.title and info.paper
        assert not info.always_targeted or info.supports_targeted


def test_attacks_that_need_image_windows_list_only_images() -> None:
    # Square's squares need [N, C, H, W]; AutoAttack runs Square as its last stage.
    assert CATALOGUE["square"].tasks == CATALOGUE["autoattack"].tasks == (IMAGE_CLASSIFICATION,)
    for name in ("fgsm", "pgd", "apgd-ce", "apgd-dlr", "fab"):
        assert CATALOGUE[name].tasks == (IMAGE_CLASSIFICATION, TABULAR_CLASSIFICATION)


# ------------------------------------------------------------------ the options each class really reads
def _feature_threat() -> FeatureThreat:
    names = ("a", "b")
    ones, zeros = np.ones(2), np.zeros(2)
    space = build_feature_space(None, names, low=zeros, high=ones, std=ones, input_range=None, source="t")
    return FeatureThreat(space, "linf", 0.1)


FEATURE_THREAT = _feature_threat()  # one object, so two builds compare equal where nothing changed


def _built(name: str, **policy: Any) -> Any:
    threat = FEATURE_THREAT if CATALOGUE[name].feature_space else None
    return build_attack(name, **BUDGET, threat=threat, **policy)


def _runs(attack: Any) -> dict[str, Any]:
    """What the constructed attack will do, including the settings of an ensemble's stages."""
    stages = getattr(attack, "stages", ())
    staged = ("stages", "gradient_stage", "search_stage")
    return {
        "repr": repr(attack),
        "own": {key: value for key, value in vars(attack).items() if key not in staged},
        "stages": [vars(stage) for stage in stages],
    }


CHANGED: dict[str, Any] = {"steps": 7, "restarts": 3, "step_size": 0.01, "queries": 11, "targeted": True}


@pytest.mark.parametrize("name", list(CATALOGUE))
@pytest.mark.parametrize("option", OPTIONS)
def test_an_option_changes_the_attack_exactly_when_the_catalogue_says_it_is_read(
    name: str, option: str
) -> None:
    info = CATALOGUE[name]
    if option == "targeted" and not info.supports_targeted:
        return  # refused by the policy; the class itself raises
    changed = _runs(_built(name, **{option: CHANGED[option]})) != _runs(_built(name))
    assert changed == (option in info.options), (name, option)


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_defaults_and_targeting_are_what_the_class_runs(name: str) -> None:
    info, attack = CATALOGUE[name], _built(name)
    if info.feature_space:  # the tabular attacks: steps and queries as the catalogue says, never targeted
        for stage in (*getattr(attack, "stages", ()), attack):
            assert getattr(stage, "steps", info.default_steps) == info.default_steps
            assert getattr(stage, "queries", info.default_queries) == info.default_queries
        assert not attack.supports_targeted
        return
    if info.queries_argument == "steps":  # Square counts queries as its steps
        assert attack.steps == info.default_queries and info.default_steps is None
    else:
        assert attack.steps == info.default_steps
    if name == "autoattack":
        assert attack.stages[-1].steps == info.default_queries
    assert attack.targeted == info.always_targeted
    assert (attack.n_target_classes == 9) if info.scans_target_classes else True


def _legacy_options(
    name: str,
    *,
    steps: int | None,
    restarts: int,
    step_size: float | None,
    queries: int | None,
    targeted: bool,
    num_classes: int,
) -> dict[str, Any]:
    """The if/elif that built attacks before the catalogue, kept to prove the defaults did not move."""
    options: dict[str, Any] = {"norm": "linf", "eps": 0.1, "bounds": (0.0, 1.0), "seed": 3}
    targets = max(1, min(9, num_classes - 1))
    if name == "square":
        options.update(steps=queries or 5000, restarts=restarts)
    elif name == "autoattack":
        options.update(steps=steps or 100, square_queries=queries or 5000, n_target_classes=targets)
    elif name == "fgsm":
        options["targeted"] = targeted
    else:
        options.update(steps=steps or (20 if name == "pgd" else 100), restarts=restarts)
        if name == "pgd":
            options.update(step_size=step_size, targeted=targeted)
        if name in ("apgd-dlr", "fab"):
            options["n_target_classes"] = targets
    return options


@pytest.mark.parametrize("name", [name for name, info in CATALOGUE.items() if not info.feature_space])
@pytest.mark.parametrize(
    "policy",
    [
        {},
        {"steps": 5, "restarts": 2, "queries": 40},
        {"step_size": 0.02, "targeted": True, "num_classes": 3},
        {"num_classes": 2},
        {"num_classes": 100, "steps": 1},
    ],
)
def test_constructor_options_equal_the_old_ones(name: str, policy: dict[str, Any]) -> None:
    values = {
        "steps": None,
        "restarts": 1,
        "step_size": None,
        "queries": None,
        "targeted": False,
        "num_classes": 10,
    }
    values |= policy
    assert constructor_options(name, **BUDGET, **values) == _legacy_options(name, **values)


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_every_constructor_option_is_a_parameter_of_the_class(name: str) -> None:
    parameters = inspect.signature(ATTACKS[name]).parameters
    if CATALOGUE[name].feature_space:
        assert "threat" in parameters
    options = constructor_options(
        name, **BUDGET, steps=3, queries=4, targeted=CATALOGUE[name].supports_targeted
    )
    assert set(options) <= set(parameters)


# ------------------------------------------------------------------ strength, refusals, docs
def test_strength_orders_white_box_attacks_and_square_only_against_autoattack() -> None:
    assert compare_strength("fgsm", "pgd") == 1 and compare_strength("pgd", "fgsm") == -1
    assert compare_strength("apgd-ce", "fab") == 0 and compare_strength("fab", "autoattack") == 1
    assert compare_strength("square", "autoattack") == 1 and compare_strength("autoattack", "square") == -1
    assert compare_strength("square", "pgd") is None and compare_strength("fgsm", "square") is None


def test_refusals_name_the_field() -> None:
    assert policy_refusal("pgd", "linf", {"queries": 10})[0] == "queries"
    assert policy_refusal("apgd-ce", "linf", {"targeted": True})[0] == "targeted"
    assert policy_refusal("fab", "linf", {"targeted": True}) is None  # FAB-T is targeted anyway
    assert policy_refusal("autoattack", "l2", {"restarts": 1, "steps": 50, "queries": 10}) is None
    assert policy_refusal("pgd", "l1", {}) == (
        "norm",
        "the attack pgd supports the norms linf, l2; found 'l1'",
    )


def test_the_docs_table_is_the_catalogue() -> None:
    assert render_markdown_table() in (ROOT / "docs" / "attacks.md").read_text(encoding="utf-8")


def test_the_lazy_package_exports_what_it_lists() -> None:
    assert set(attacks.__all__) <= set(dir(attacks))
    assert all(getattr(attacks, name) is not None for name in attacks.__all__)


def test_the_catalogue_and_the_policy_load_without_torch() -> None:
    code = (
        "import sys\n"
        "import gate.attacks.catalogue, gate.policy, gate.policy.plain_language, gate.policy.diff\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('gate'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr
