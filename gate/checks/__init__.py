"""The registry of check kinds, keyed by the policy's ``kind``.

Built explicitly from the implementations (no import-time self-registration); a test asserts that it
covers exactly the kinds the policy format defines.
"""

from __future__ import annotations

from gate.checks.accuracy import AccuracyCheck
from gate.checks.adversarial import AdversarialCheck
from gate.checks.attack_selftest import AttackSelftestCheck
from gate.checks.attribution import AttributionCheck
from gate.checks.background import BackgroundCheck
from gate.checks.base import CheckContext, CheckKind, CheckTimeout
from gate.checks.calibration import CalibrationCheck
from gate.checks.certified import CertifiedCheck
from gate.checks.corruption import CorruptionCheck
from gate.checks.export_parity import ExportParityCheck
from gate.checks.gradient_masking import GradientMaskingCheck
from gate.checks.model_sanity import ModelSanityCheck
from gate.checks.subgroup import SubgroupCheck
from gate.policy.specs import kind_of

IMPLEMENTATIONS: tuple[type[CheckKind], ...] = (
    AccuracyCheck,
    ExportParityCheck,
    AdversarialCheck,
    GradientMaskingCheck,
    ModelSanityCheck,
    CorruptionCheck,
    AttributionCheck,
    CertifiedCheck,
    SubgroupCheck,
    CalibrationCheck,
    BackgroundCheck,
    AttackSelftestCheck,
)

REGISTRY: dict[str, CheckKind] = {kind_of(impl.spec_type): impl() for impl in IMPLEMENTATIONS}

__all__ = ["REGISTRY", "CheckContext", "CheckKind", "CheckTimeout"]
