"""Check kind ``certified``: a guarantee that no perturbation in the ball changes the prediction.

An attack that fails proves nothing about the next attack; a certificate bounds every perturbation in
the ball. Two methods (docs/certified.md):

* ``randomized_smoothing`` (Cohen, Rosenfeld & Kolter 2019): the smoothed classifier's class under
  Gaussian noise, certified in L2 with probability 1 - alpha per sample (``gate/certify/smoothing.py``).
  Forward passes of the ONNX session only, so it works for every model gate loads, ONNX-only included.
* ``interval_bounds`` (Gowal et al. 2018): the box around each input propagated through the deployed
  ONNX graph (``gate/certify/bounds.py``); deterministic, sound, and loose.

Both metrics are proportions over samples, so the interval, shards and ``--resume`` work as for accuracy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from gate.checks.base import CheckContext, CheckKind, Columns
from gate.errors import CheckError
from gate.measurement import Measurement
from gate.policy.specs import CertifiedSpec

if TYPE_CHECKING:
    from gate.data.evaldata import Batch

CURVE_POINTS = 25


class CertifiedCheck(CheckKind[CertifiedSpec]):
    """Certified (smoothing) or verified (interval bounds) accuracy at the policy's radius."""

    spec_type = CertifiedSpec

    def run(self, spec: CertifiedSpec, context: CheckContext) -> Measurement:
        if spec.method == "randomized_smoothing":
            return _randomized_smoothing(spec, context)
        return _interval_bounds(spec, context)


def _randomized_smoothing(spec: CertifiedSpec, context: CheckContext) -> Measurement:
    from gate.certify.curve import certified_accuracy_curve, write_curve_png
    from gate.certify.smoothing import certify

    sigma = float(spec.sigma or 0.0)
    n0, n = int(spec.smoothing_option("n0")), int(spec.smoothing_option("n"))
    alpha, chunk = float(spec.smoothing_option("alpha")), int(spec.smoothing_option("batch"))

    def certify_batch(batch: Batch, rows: torch.Tensor) -> Columns:
        result = certify(
            context.model.scores, batch.x, batch.index,
            sigma=sigma, n0=n0, n=n, alpha=alpha, batch=chunk, seed=context.seed,
            predict_class=context.task.predict, deadline_check=context.check_deadline,
        )  # fmt: skip
        return {
            "label": batch.y.cpu().to(torch.int64),
            "prediction": result.prediction.cpu().to(torch.int64),
            "radius": result.radius.cpu().to(torch.float64),
            "p_lower": result.p_lower.cpu().to(torch.float64),
            "predict": result.predict.cpu().to(torch.int64),
        }

    label = f"{spec.id}: randomized smoothing, {n0 + n} noisy passes per sample"
    columns = context.per_sample(label, certify_batch)
    if not columns:
        raise CheckError("the evaluation data selected no samples")
    labels, prediction, radius = columns["label"], columns["prediction"], columns["radius"]
    if not bool(torch.isfinite(radius).all()):
        raise CheckError("randomized smoothing returned a non-finite radius")
    correct = prediction == labels
    certified = correct & (radius >= spec.radius)
    abstained = prediction < 0
    grid = torch.linspace(0.0, max(2.0 * spec.radius, float(radius.max())), CURVE_POINTS).tolist()
    curve = certified_accuracy_curve(radius, correct, grid)
    path = context.artifact_path(spec.id, "certified_accuracy_curve.png")
    artifacts = [write_curve_png(path, curve, spec.radius)]
    right = radius[correct]
    quartiles = (
        [float(q) for q in torch.quantile(right, torch.tensor([0.25, 0.5, 0.75], dtype=right.dtype))]
        if len(right)
        else [0.0, 0.0, 0.0]
    )
    smoothed_accuracy = float((columns["predict"] == labels).double().mean())
    details = {
        "method": "randomized_smoothing",
        "sigma": sigma,
        "radius": spec.radius,
        "n0": n0,
        "n": n,
        "alpha": alpha,
        "abstain_rate": float(abstained.double().mean()),
        "smoothed_accuracy": smoothed_accuracy,
        "radius_quartiles_of_correct": quartiles,
        "certified_accuracy_curve": [[round(r, 6), round(a, 6)] for r, a in curve],
        "forward_passes": len(labels) * (n0 + n),
    }
    message = (
        f"{int(certified.sum())} of {len(labels)} samples certified at radius {spec.radius:g} (σ = {sigma:g}, "
        f"n = {n}, each certificate wrong with probability ≤ {alpha:g}); the smoothed classifier's accuracy "
        f"(PREDICT) is {smoothed_accuracy:.4g}, {int(abstained.sum())} abstained"
    )
    return Measurement.proportion(certified, details=details, artifacts=artifacts, message=message)


def _interval_bounds(spec: CertifiedSpec, context: CheckContext) -> Measurement:
    from gate.certify.bounds import IntervalBounds

    # Prepared once: the graph is parsed and its operators checked for bound rules before any sample runs.
    bounds = IntervalBounds(context.model.scores_graph())
    low, high = context.policy.input.range
    # The box [x - r, x + r] contains the L2 ball of radius r too: sound for both norms, looser for L2.
    radius = float(spec.radius)

    def verify_batch(batch: Batch, rows: torch.Tensor) -> Columns:
        x = batch.x.to(torch.float32)
        # Every preprocessing step is increasing or a permutation: the box's corners map to the image's.
        lower = context.model.model_input((x - radius).clamp(low, high)).cpu()
        upper = context.model.model_input((x + radius).clamp(low, high)).cpu()
        labels = batch.y.cpu().to(torch.int64)
        # Lower bounds of logit[y] - logit[j], through the last affine layer where there is one (Gowal et al.).
        margin = bounds.margins(lower, upper, labels).amin(dim=1).to(torch.float64)
        return {"verified": margin > 0, "margin": margin}

    columns = context.per_sample(
        f"{spec.id}: interval bounds at radius {radius:g}", verify_batch, device="cpu"
    )
    if not columns:
        raise CheckError("the evaluation data selected no samples")
    ok, margin = columns["verified"].bool(), columns["margin"]
    if bool(torch.isnan(margin).any()):
        raise CheckError("interval bounds gave NaN for some samples: the certificate cannot be trusted")
    _, labels, predictions = context.clean_predictions()
    clean = context.task.correct(predictions, labels).cpu()
    details = {
        "method": "interval_bounds",
        "norm": spec.norm,
        "radius": radius,
        "clean_accuracy": float(clean.double().mean()),
        "median_margin_lower_bound": float(margin.median()),
    }
    message = (
        f"{int(ok.sum())} of {len(ok)} samples verified at {spec.norm} radius {radius:g}; interval bounds are "
        "sound but loose: a sample not verified is not thereby broken"
        + ("; the L2 ball is certified through the box that contains it" if spec.norm == "l2" else "")
    )
    return Measurement.proportion(ok, details=details, message=message)
