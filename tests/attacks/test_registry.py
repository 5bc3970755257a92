from __future__ import annotations

import pytest

import gate.attacks as attacks
from gate.attacks.registry import ATTACKS, attack_class, make_attack

NAMES = {
    "fgsm", "pgd", "apgd-ce", "apgd-dlr", "fab", "square", "autoattack", "cpgd", "constrained-search", "constrained",
}  # fmt: skip


def test_registry_names_are_exactly_the_documented_ones():
    assert set(ATTACKS) == NAMES
    assert all(cls.name == name for name, cls in ATTACKS.items())


def test_unknown_attack_lists_known_ones():
    with pytest.raises(KeyError, match="known attacks: apgd-ce"):
        attack_class("cw")


def test_make_attack_passes_options():
    attack = make_attack("pgd", norm="l2", eps=0.5, steps=7, seed=4)
    assert (attack.norm, attack.eps, attack.steps, attack.seed) == ("l2", 0.5, 7, 4)


def test_public_api_is_exported():
    assert set(attacks.__all__) <= set(dir(attacks))
    assert {"Attack", "AttackOutcome", "perturbation_norm", "make_attack"} <= set(attacks.__all__)


@pytest.mark.parametrize("name", ["apgd-dlr", "autoattack"])
def test_an_attack_that_needs_four_classes_refuses_a_binary_model_by_name(name):
    from gate.attacks.registry import build_attack
    from gate.errors import CheckError

    with pytest.raises(CheckError, match=rf"{name} needs a model with at least 4 classes.*has 2: use pgd"):
        build_attack(name, norm="linf", epsilon=0.1, bounds=(0.0, 1.0), seed=0, num_classes=2)
    build_attack(name, norm="linf", epsilon=0.1, bounds=(0.0, 1.0), seed=0, num_classes=4)
