"""Attribution methods (which input pixels or features drive a prediction) and the metrics that judge them.

Every method has the signature of :class:`AttributionFn` and is listed in :data:`METHODS`;
:func:`attribute` dispatches by name. Inputs are images ``[N, C, H, W]`` or feature vectors ``[N, F]``
(``rise`` and the mask metrics take images only). Gradient methods need a differentiable PyTorch model;
``occlusion`` and ``rise`` only call a score function, so an ONNX-only model can be explained.
"""

from gate.explain._utils import gaussian_blur, spearman
from gate.explain.curve_chart import save_probability_curve
from gate.explain.feature_chart import save_feature_importance, top_features
from gate.explain.heatmap import save_heatmaps, save_randomization_maps
from gate.explain.input_x_gradient import input_x_gradient
from gate.explain.integrated_gradients import integrated_gradients
from gate.explain.metrics import (
    FLAT_TOLERANCE,
    RandomizationResult,
    curve_area,
    curve_spread,
    deletion_auc,
    deletion_curve,
    feature_importance_stability,
    ignores_input,
    insertion_auc,
    insertion_curve,
    max_sensitivity,
    pointing_game,
    probability_change,
    probability_curve,
    randomization_similarity,
    rank_stability,
    roi_mass,
)
from gate.explain.occlusion import occlusion
from gate.explain.options import AttributionOptions, ScoreFn
from gate.explain.registry import METHODS, AttributionFn, MethodSpec, attribute, get_method
from gate.explain.rise import rise
from gate.explain.saliency import saliency
from gate.explain.smoothgrad import smoothgrad

__all__ = [
    "FLAT_TOLERANCE",
    "METHODS",
    "AttributionFn",
    "AttributionOptions",
    "MethodSpec",
    "RandomizationResult",
    "ScoreFn",
    "attribute",
    "curve_area",
    "curve_spread",
    "deletion_auc",
    "deletion_curve",
    "feature_importance_stability",
    "gaussian_blur",
    "get_method",
    "ignores_input",
    "input_x_gradient",
    "insertion_auc",
    "insertion_curve",
    "integrated_gradients",
    "max_sensitivity",
    "occlusion",
    "pointing_game",
    "probability_change",
    "probability_curve",
    "randomization_similarity",
    "rank_stability",
    "rise",
    "roi_mass",
    "saliency",
    "save_feature_importance",
    "save_heatmaps",
    "save_probability_curve",
    "save_randomization_maps",
    "smoothgrad",
    "spearman",
    "top_features",
]
