"""The attacks by name, as policies and the CLI spell them; one source of truth for both."""

from __future__ import annotations

from gate.attacks.apgd import APGDCE, APGDT
from gate.attacks.autoattack import AutoAttack
from gate.attacks.base import Attack
from gate.attacks.fab import FAB
from gate.attacks.fgsm import FGSM
from gate.attacks.pgd import PGD
from gate.attacks.square import Square

ATTACKS: dict[str, type[Attack]] = {
    attack.name: attack for attack in (FGSM, PGD, APGDCE, APGDT, FAB, Square, AutoAttack)
}


def attack_class(name: str) -> type[Attack]:
    """The attack registered as ``name``; a ``KeyError`` names the known ones."""
    try:
        return ATTACKS[name]
    except KeyError:
        raise KeyError(f"unknown attack {name!r}; known attacks: {', '.join(sorted(ATTACKS))}") from None


def make_attack(name: str, **options: object) -> Attack:
    """Build the attack ``name`` with keyword options (``norm``, ``eps``, ``steps`` ...)."""
    return attack_class(name)(**options)  # type: ignore[arg-type]
