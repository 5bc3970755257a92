"""Metrics of attribution quality: faithfulness, localisation, randomisation, sensitivity and stability."""

from gate.explain.metrics.localisation import pointing_game, roi_mass
from gate.explain.metrics.perturbation_curves import deletion_auc, insertion_auc, probability_curve
from gate.explain.metrics.randomization import RandomizationResult, randomization_similarity
from gate.explain.metrics.sensitivity import max_sensitivity
from gate.explain.metrics.stability import feature_importance_stability, rank_stability

__all__ = [
    "RandomizationResult",
    "deletion_auc",
    "feature_importance_stability",
    "insertion_auc",
    "max_sensitivity",
    "pointing_game",
    "probability_curve",
    "randomization_similarity",
    "rank_stability",
    "roi_mass",
]
