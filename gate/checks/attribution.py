"""Check kind ``attribution``: does the model decide for reasons a human would accept?

Attributions are computed per batch (gradient methods on the PyTorch model, ``occlusion``/``rise`` on the
ONNX Runtime session) and judged by one metric, each a pure function in gate/explain/metrics with its
paper: faithfulness (``deletion_auc``, ``insertion_auc``), localisation on the data's ``mask``
(``roi_mass``, ``pointing_game``), sanity (``randomization_similarity``) and stability
(``max_sensitivity``, ``feature_importance_stability``). The value is the mean over samples with a
bootstrap interval (``pointing_game``, a hit rate, gets an exact interval). The evidence is a heatmap per
example for images, and for feature vectors a bar chart of the features' mean |attribution| over the
examples, whose ranking also goes into the details; with it, the mean deletion or insertion curve of all
samples, and for the randomisation test the trained and the randomised model's maps side by side. Which methods, metrics and settings a task's inputs
allow is the policy validator's business (the tables in gate/policy/specs.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from gate.checks.base import CheckContext, CheckKind
from gate.data.evaldata import Batch
from gate.errors import CheckError
from gate.explain import (
    FLAT_TOLERANCE,
    AttributionOptions,
    attribute,
    curve_area,
    curve_spread,
    deletion_curve,
    feature_importance_stability,
    ignores_input,
    insertion_curve,
    max_sensitivity,
    pointing_game,
    probability_change,
    randomization_similarity,
    roi_mass,
    save_feature_importance,
    save_heatmaps,
    save_probability_curve,
    save_randomization_maps,
    top_features,
)
from gate.explain._utils import resolve_baseline
from gate.explain.metrics.randomization import RandomizationResult, parameterised_layers
from gate.explain.occlusion import occlusion_plan
from gate.explain.registry import get_method
from gate.measurement import Measurement
from gate.policy.specs import AttributionSpec

logger = logging.getLogger(__name__)

NEEDS_MASK = ("roi_mass", "pointing_game")
CURVES = {"deletion_auc": deletion_curve, "insertion_auc": insertion_curve}
METRIC_WORDS = {"deletion_auc": "deletion AUC", "insertion_auc": "insertion AUC"}
NOISE_METRICS = ("max_sensitivity", "feature_importance_stability")
CHART_FEATURES = 20
"""Most features in a tabular check's bar chart and in its details' ``top_features``."""
OCCLUSION_PASS_BUDGET = 250_000
"""Occlusion's model evaluations in one check above which its message warns (it still runs): about four
minutes at 1,000 images a second, what a small CNN manages on two CPU cores at 32 x 32 pixels."""
ATTRIBUTIONS_PER_SAMPLE = {"max_sensitivity": 11, "feature_importance_stability": 6}
"""Attributions a metric computes per sample, where more than one: the input and its noisy copies (the
defaults of :func:`gate.explain.max_sensitivity` and :func:`gate.explain.feature_importance_stability`)."""


def attribution_options(
    spec: AttributionSpec, bounds: tuple[float, float], batch_size: int
) -> AttributionOptions:
    """Map the policy's method options onto the explain library's settings."""
    options: dict[str, object] = {"baseline": spec.baseline, "value_range": bounds, "batch_size": batch_size}
    if spec.steps is not None:
        options["steps"] = spec.steps
    if spec.window is not None:
        options["window"] = spec.window
    if spec.stride is not None:
        options["stride"] = spec.stride
    if spec.samples is not None:
        options["masks" if spec.method == "rise" else "samples"] = spec.samples
    return AttributionOptions(**options)  # type: ignore[arg-type]


def occlusion_cost(
    spec: AttributionSpec,
    sample_shape: tuple[int, ...],
    samples: int,
    options: AttributionOptions,
    gradient_model: nn.Module | None,
) -> dict[str, int | None]:
    """Occlusion's patch geometry and its model evaluations in the whole check, known before it runs.

    ``forward_passes`` counts every image (or feature vector) scored to compute occlusion maps: each
    attribution of a sample costs its patches plus one, the metric needs one attribution per sample
    (:data:`ATTRIBUTIONS_PER_SAMPLE`, or for the randomisation test one per randomised layer plus two), and
    the evidence explains ``examples`` samples once more. The metric's own passes (e.g. a deletion curve's
    steps) are not included.
    """
    plan = occlusion_plan(sample_shape, options)
    if spec.metric == "randomization_similarity":
        layers = len(parameterised_layers(gradient_model)) if gradient_model is not None else 0
        per_sample = layers + 2
    else:
        per_sample = ATTRIBUTIONS_PER_SAMPLE.get(spec.metric, 1)
    attributions = samples * per_sample + min(spec.examples, samples)
    return {
        "window": plan.window,
        "stride": plan.stride,
        "patches_per_sample": plan.patches,
        "forward_passes": attributions * plan.passes_per_sample,
        "forward_pass_budget": OCCLUSION_PASS_BUDGET,
    }


def occlusion_warning(cost: dict[str, int | None]) -> str:
    """The message's warning when ``cost`` is over :data:`OCCLUSION_PASS_BUDGET`, else ``""``."""
    passes = cost["forward_passes"] or 0
    if passes <= OCCLUSION_PASS_BUDGET:
        return ""
    if cost["window"] is None:
        geometry = f"{cost['patches_per_sample']} features"
        remedy = "fewer samples (--samples)"
    else:
        geometry = (
            f"{cost['patches_per_sample']} patches per sample (window {cost['window']}, "
            f"stride {cost['stride']})"
        )
        remedy = "a larger window or stride, or fewer samples (--samples)"
    return (
        f"occlusion needs {passes:,} forward passes ({geometry}), over the budget of "
        f"{OCCLUSION_PASS_BUDGET:,}; for a faster check give {remedy}"
    )


def refuse_input_independent(spec: AttributionSpec, values: torch.Tensor, changes: torch.Tensor) -> None:
    """Raise a :class:`CheckError` when no sample's target probability moved by :data:`FLAT_TOLERANCE`.

    A model whose outputs do not depend on its input satisfies some metrics perfectly (a flat deletion
    curve has a low area; all-zero attributions have a randomisation similarity and a max-sensitivity of 0),
    so its value says nothing about the attributions. As when there is nothing to randomise, the check
    fails closed: an error, which no waiver turns into a pass and which a merge of shards keeps.
    """
    if not ignores_input(changes):
        return
    where = (
        f"along every sample's {spec.metric.removesuffix('_auc')} curve"
        if spec.metric in CURVES
        else "between each input and the all-baseline input"
    )
    name = METRIC_WORDS.get(spec.metric, spec.metric.replace("_", " "))
    raise CheckError(
        f"the model's outputs do not depend on its input: {name} is meaningless ({spec.metric} = "
        f"{float(values.double().mean()):.4g} on {len(values)} samples, but the target probability moved by "
        f"at most {float(changes.max()):.2g} {where}, under the tolerance {FLAT_TOLERANCE:g})"
    )


class AttributionCheck(CheckKind[AttributionSpec]):
    spec_type = AttributionSpec

    def run(self, spec: AttributionSpec, context: CheckContext) -> Measurement:
        if spec.metric in NEEDS_MASK and not context.data.has_mask:
            raise CheckError(
                f"{spec.metric} needs a 'mask' array in the data ([N, H, W], 1 where the evidence is); "
                f"{context.data.source} has none"
            )
        gradient_model = self._gradient_model(spec, context)
        bounds = context.policy.input.range
        options = attribution_options(spec, bounds, context.batch_size)
        cost = None
        if spec.method == "occlusion":
            cost = occlusion_cost(spec, context.data.sample_shape, len(context.data), options, gradient_model)
            if occlusion_warning(cost):
                logger.warning("%s: %s", spec.id, occlusion_warning(cost))
        evidence: dict[str, list] = {}
        _, _, clean_predictions = context.clean_predictions()

        def attribute_batch(batch: Batch, rows: torch.Tensor) -> dict[str, torch.Tensor]:
            predictions = clean_predictions[rows].to(context.device)
            target = batch.y if spec.target == "label" else predictions
            first = not evidence and bool(spec.examples)
            kept: dict[str, RandomizationResult] = {}
            values = self._metric(
                spec, context, gradient_model, options, batch.x, target, batch.mask, batch.index,
                keep=kept if first else None,
            )  # fmt: skip
            if first:
                evidence.update(self._evidence(spec, context, gradient_model, options, batch, predictions))
                if "randomization" in kept and batch.x.dim() == 4:
                    maps = self._randomization_maps(spec, context, batch, kept["randomization"])
                    evidence["artifacts"] = [maps, *evidence["artifacts"]]
            return values

        columns = context.per_sample(f"{spec.id}: {spec.method} / {spec.metric}", attribute_batch)
        if not columns:
            raise CheckError("the evaluation data selected no samples")
        per_sample = columns["value"]
        refuse_input_independent(spec, per_sample, columns["probability_change"])
        details = {
            "method": spec.method,
            "metric": spec.metric,
            "target": spec.target,
            "higher_is_better": spec.better_when_higher,
            "largest_probability_change": float(columns["probability_change"].max()),
        }
        if "top_features" in evidence:
            details["top_features"] = evidence["top_features"]
        message = ""
        if cost is not None:
            details["occlusion"] = cost
            message = occlusion_warning(cost)
        artifacts = evidence.get("artifacts", [])
        # A resume state written before the curves were kept has none: no picture then, the value stands.
        if spec.metric in CURVES and len(columns.get("curve", ())) == len(per_sample):
            artifacts = [self._mean_curve(spec, context, columns), *artifacts]
        if spec.metric == "pointing_game":
            return Measurement.proportion(
                per_sample > 0.5, details=details, artifacts=artifacts, message=message
            )
        details["per_sample_quantiles"] = {
            q: float(per_sample.quantile(q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)
        }
        return Measurement.mean_of(per_sample, details=details, artifacts=artifacts, message=message)

    @staticmethod
    def _gradient_model(spec: AttributionSpec, context: CheckContext) -> nn.Module | None:
        needs = get_method(spec.method).needs_gradients or spec.metric == "randomization_similarity"
        if needs:
            return context.model.require_gradient_model().to(context.device).eval()
        model = context.model.gradient_model
        return None if model is None else model.to(context.device).eval()

    @staticmethod
    def _metric(
        spec: AttributionSpec,
        context: CheckContext,
        gradient_model: nn.Module | None,
        options: AttributionOptions,
        x: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None,
        index: torch.Tensor,
        *,
        keep: dict[str, RandomizationResult] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``value`` per sample, and ``probability_change``: how far the target probability moved (along
        the curve for deletion and insertion, else between the input and the all-baseline input). The
        curve metrics also give each sample's ``curve`` and its ``fractions`` (for the mean curve's
        picture); the randomisation test puts its result in ``keep`` when given (for the maps' picture)."""
        score_fn, seed, batch_size = context.model.scores, context.seed, context.batch_size
        # The policy's reference input (a number, zeros, or each image's per-channel mean) for every part.
        reference = resolve_baseline(x, spec.baseline)
        if spec.metric == "randomization_similarity":
            result = randomization_similarity(
                spec.method, x, target, gradient_model=gradient_model, options=options, seed=seed, index=index
            )
            if keep is not None:
                keep["randomization"] = result
            value = result.similarity
        elif spec.metric in NOISE_METRICS:
            low, high = context.policy.input.range
            radius = spec.radius if spec.radius is not None else 0.02 * (high - low)
            metric = max_sensitivity if spec.metric == "max_sensitivity" else feature_importance_stability
            value = metric(
                spec.method, x, target, gradient_model=gradient_model, score_fn=score_fn,
                options=options, seed=seed, radius=radius, index=index,
            )  # fmt: skip
        else:
            attribution = attribute(
                spec.method, x, target, gradient_model=gradient_model, score_fn=score_fn, options=options,
                seed=seed, index=index,
            )  # fmt: skip
            if spec.metric in CURVES:
                fractions, curve = CURVES[spec.metric](
                    score_fn, x, target, attribution, baseline=reference, batch_size=batch_size
                )
                return {
                    "value": curve_area(fractions, curve),
                    "probability_change": curve_spread(curve),
                    "curve": curve.float(),
                    "fractions": fractions.expand(len(curve), -1),
                }
            if mask is None:
                raise CheckError(f"{spec.metric} needs a mask for every sample; a batch came without one")
            value = (roi_mass if spec.metric == "roi_mass" else pointing_game)(attribution, mask)
        change = probability_change(score_fn, x, target, reference, batch_size=batch_size)
        return {"value": value, "probability_change": change}

    @staticmethod
    def _evidence(spec, context, gradient_model, options, batch, predictions) -> dict[str, list]:
        """Pictures of the first ``examples`` samples: heatmaps, or one bar chart of feature importances."""
        count = min(spec.examples, len(batch))
        x, y = batch.x[:count], batch.y[:count]
        target = y if spec.target == "label" else predictions[:count]
        attribution = attribute(
            spec.method, x, target, gradient_model=gradient_model, score_fn=context.model.scores,
            options=options, seed=context.seed, index=batch.index[:count],
        )  # fmt: skip
        if x.dim() == 2:
            ranking = top_features(attribution, getattr(context.data, "feature_names", None), CHART_FEATURES)
            title = (
                f"{spec.id}: {spec.method.replace('_', ' ')}\n"
                f"top {len(ranking)} of {x.shape[1]} features, mean over {count} samples"
            )
            chart = save_feature_importance(
                context.artifact_path(spec.id, "feature_importance.png"), ranking, title=title
            )
            top = [{"feature": name, "mean_abs_attribution": value} for name, value in ranking]
            return {"artifacts": [chart], "top_features": top}
        labels = [f"y={int(label)} pred={int(p)}" for label, p in zip(y, predictions[:count], strict=True)]
        prefix = context.artifact_path(spec.id, "heatmap")
        mask = None if batch.mask is None else batch.mask[:count]
        heatmaps = save_heatmaps(
            prefix, x.cpu(), attribution.cpu(), mask.cpu() if mask is not None else None, labels
        )
        return {"artifacts": heatmaps}

    @staticmethod
    def _mean_curve(spec: AttributionSpec, context: CheckContext, columns: dict[str, torch.Tensor]) -> Path:
        """The mean deletion or insertion curve of every sample, its area in the legend (PNG)."""
        kind = spec.metric.removesuffix("_auc")
        title = f"{spec.id}: {spec.method.replace('_', ' ')}, {kind} curve"
        path = context.artifact_path(spec.id, f"{kind}_curve.png")
        return save_probability_curve(path, columns["fractions"][0], columns["curve"], kind=kind, title=title)

    @staticmethod
    def _randomization_maps(spec, context, batch: Batch, result: RandomizationResult) -> Path:
        """The first ``examples`` samples' maps before and after randomisation, side by side (PNG)."""
        count = min(spec.examples, len(batch))
        path = context.artifact_path(spec.id, "randomization_maps.png")
        return save_randomization_maps(
            path, batch.x[:count].cpu(), result.trained[:count].cpu(), result.randomized[:count].cpu(),
            result.similarity[:count].cpu(), layers=len(result.layers),
        )  # fmt: skip
