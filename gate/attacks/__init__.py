"""Evasion attacks in pure PyTorch behind one interface: ``Attack(norm=, eps=, ...).perturb(model, x, y)``."""

from gate.attacks.apgd import APGD, APGDCE, APGDT
from gate.attacks.autoattack import AutoAttack, AutoAttackOutcome
from gate.attacks.base import Attack, AttackOutcome, Model
from gate.attacks.fab import FAB
from gate.attacks.fgsm import FGSM
from gate.attacks.pgd import PGD
from gate.attacks.registry import ATTACKS, attack_class, make_attack
from gate.attacks.square import Square
from gate.attacks.threat import Norm, ThreatModel, perturbation_norm

__all__ = [
    "APGD",
    "APGDCE",
    "APGDT",
    "ATTACKS",
    "FAB",
    "FGSM",
    "PGD",
    "Attack",
    "AttackOutcome",
    "AutoAttack",
    "AutoAttackOutcome",
    "Model",
    "Norm",
    "Square",
    "ThreatModel",
    "attack_class",
    "make_attack",
    "perturbation_norm",
]
