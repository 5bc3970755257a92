"""The attack classes by name, as policies and the CLI spell them, and the one way a policy builds one.

What each name means (defaults, options, norms, tasks) is written once, in the torch-free ``catalogue``;
this module only maps the names to the classes that implement them.
"""

from __future__ import annotations

from typing import Any

from gate.attacks.apgd import APGDCE, APGDT
from gate.attacks.autoattack import AutoAttack
from gate.attacks.base import Attack
from gate.attacks.catalogue import attack_info, constructor_options
from gate.attacks.constrained_auto import ConstrainedAuto
from gate.attacks.constrained_pgd import ConstrainedPGD
from gate.attacks.constrained_search import ConstrainedSearch
from gate.attacks.fab import FAB
from gate.attacks.feature_attack import FeatureAttack
from gate.attacks.feature_space import FeatureThreat
from gate.attacks.fgsm import FGSM
from gate.attacks.pgd import PGD
from gate.attacks.square import Square
from gate.errors import CheckError

ATTACKS: dict[str, type[Attack] | type[FeatureAttack]] = {
    attack.name: attack
    for attack in (
        FGSM, PGD, APGDCE, APGDT, FAB, Square, AutoAttack, ConstrainedPGD, ConstrainedSearch, ConstrainedAuto,
    )
}  # fmt: skip


def attack_class(name: str) -> type[Attack] | type[FeatureAttack]:
    """The attack registered as ``name``; a ``KeyError`` names the known ones."""
    try:
        return ATTACKS[name]
    except KeyError:
        raise KeyError(f"unknown attack {name!r}; known attacks: {', '.join(sorted(ATTACKS))}") from None


def make_attack(name: str, **options: object) -> Attack | FeatureAttack:
    """Build the attack ``name`` with keyword options (``norm``, ``eps``, ``steps`` ...)."""
    return attack_class(name)(**options)  # type: ignore[arg-type]


def build_attack(
    name: str, *, num_classes: int = 10, threat: FeatureThreat | None = None, **policy_values: Any
) -> Attack | FeatureAttack:
    """The attack a policy names, with its budget and the catalogue's defaults filled in.

    ``policy_values`` are :func:`~gate.attacks.catalogue.constructor_options`' keywords (``norm``,
    ``epsilon``, ``bounds``, ``seed``, ``steps`` …); a feature-space attack also takes its ``threat``
    (the data's feature space and the policy's budget). Raises ``CheckError`` for a model with fewer
    classes than the attack handles (known only now).
    """
    info = attack_info(name)
    if num_classes < info.min_classes:
        raise CheckError(
            f"{name} needs a model with at least {info.min_classes} classes (the targeted DLR loss ranks the "
            f"3rd and 4th largest logits); this model has {num_classes}: use pgd, apgd-ce or fab instead"
        )
    options = constructor_options(name, num_classes=num_classes, **policy_values)
    if info.feature_space:
        if threat is None:
            raise CheckError(f"{name} searches a feature space, and none was given (tabular data only)")
        options["threat"] = threat
    return make_attack(name, **options)
