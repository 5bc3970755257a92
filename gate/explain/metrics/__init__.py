"""Metrics of attribution quality: faithfulness, localisation, randomisation, sensitivity and stability."""

from gate.explain.metrics.dependence import FLAT_TOLERANCE, curve_spread, ignores_input, probability_change
from gate.explain.metrics.localisation import pointing_game, roi_mass
from gate.explain.metrics.perturbation_curves import (
    curve_area,
    deletion_auc,
    deletion_curve,
    insertion_auc,
    insertion_curve,
    probability_curve,
)
from gate.explain.metrics.randomization import RandomizationResult, randomization_similarity
from gate.explain.metrics.sensitivity import max_sensitivity
from gate.explain.metrics.stability import feature_importance_stability, rank_stability

__all__ = [
    "FLAT_TOLERANCE",
    "RandomizationResult",
    "curve_area",
    "curve_spread",
    "deletion_auc",
    "deletion_curve",
    "feature_importance_stability",
    "ignores_input",
    "insertion_auc",
    "insertion_curve",
    "max_sensitivity",
    "pointing_game",
    "probability_change",
    "probability_curve",
    "randomization_similarity",
    "rank_stability",
    "roi_mass",
]
