"""Evasion attacks in pure PyTorch behind one interface: ``Attack(norm=, eps=, ...).perturb(model, x, y)``.

The names below load on first use (PEP 562), so ``gate.attacks.catalogue`` can be read by the policy tools
without importing torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gate.attacks.apgd import APGD, APGDCE, APGDT
    from gate.attacks.autoattack import AutoAttack, AutoAttackOutcome
    from gate.attacks.base import Attack, AttackOutcome, Model
    from gate.attacks.catalogue import CATALOGUE, AttackInfo
    from gate.attacks.constrained_auto import ConstrainedAuto
    from gate.attacks.constrained_pgd import ConstrainedPGD
    from gate.attacks.constrained_search import ConstrainedSearch
    from gate.attacks.fab import FAB
    from gate.attacks.feature_attack import AttackModels, FeatureAttack, FeatureOutcome
    from gate.attacks.feature_space import FeatureSpace, FeatureThreat, build_feature_space
    from gate.attacks.fgsm import FGSM
    from gate.attacks.pgd import PGD
    from gate.attacks.registry import ATTACKS, attack_class, build_attack, make_attack
    from gate.attacks.square import Square
    from gate.attacks.threat import Norm, ThreatModel, perturbation_norm

_HOMES: dict[str, str] = {
    "APGD": "apgd",
    "APGDCE": "apgd",
    "APGDT": "apgd",
    "ATTACKS": "registry",
    "CATALOGUE": "catalogue",
    "AttackModels": "feature_attack",
    "ConstrainedAuto": "constrained_auto",
    "ConstrainedPGD": "constrained_pgd",
    "ConstrainedSearch": "constrained_search",
    "FeatureAttack": "feature_attack",
    "FeatureOutcome": "feature_attack",
    "FeatureSpace": "feature_space",
    "FeatureThreat": "feature_space",
    "build_feature_space": "feature_space",
    "FAB": "fab",
    "FGSM": "fgsm",
    "PGD": "pgd",
    "Attack": "base",
    "AttackInfo": "catalogue",
    "AttackOutcome": "base",
    "AutoAttack": "autoattack",
    "AutoAttackOutcome": "autoattack",
    "Model": "base",
    "Norm": "threat",
    "Square": "square",
    "ThreatModel": "threat",
    "attack_class": "registry",
    "build_attack": "registry",
    "make_attack": "registry",
    "perturbation_norm": "threat",
}

__all__ = [
    "APGD",
    "APGDCE",
    "APGDT",
    "ATTACKS",
    "CATALOGUE",
    "FAB",
    "FGSM",
    "PGD",
    "Attack",
    "AttackInfo",
    "AttackModels",
    "AttackOutcome",
    "AutoAttack",
    "AutoAttackOutcome",
    "ConstrainedAuto",
    "ConstrainedPGD",
    "ConstrainedSearch",
    "FeatureAttack",
    "FeatureOutcome",
    "FeatureSpace",
    "FeatureThreat",
    "Model",
    "Norm",
    "Square",
    "ThreatModel",
    "attack_class",
    "build_attack",
    "build_feature_space",
    "make_attack",
    "perturbation_norm",
]


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` the first time someone asks for it."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
