"""Check kind ``calibration``: does the deployed model's confidence mean what it says (Guo et al. 2017)?

Confidence is the probability of the predicted class in the ONNX Runtime session's scores: the softmax of
its logits, or the scores themselves when the model outputs probabilities. ECE over equal-mass bins is not
a mean of per-sample values, so the check runs once on the whole selection, in shard 1 of a sharded run
(``gate merge`` takes its result from there), and decides exactly as an unsharded run.
"""

from __future__ import annotations

import numpy as np
import torch

from gate.checks.base import CheckContext, CheckKind, deferred_to_first_shard
from gate.data.evaldata import Batch
from gate.errors import CheckError
from gate.measurement import Measurement
from gate.metrics import calibration
from gate.model.squashing import looks_like_probabilities
from gate.policy.specs import CalibrationSpec
from gate.report.reliability import write_reliability_png
from gate.stats import Interval

BINNED_INTERVALS = {
    "ece": calibration.ece_interval,
    "max_overconfidence": calibration.max_overconfidence_interval,
}


class CalibrationCheck(CheckKind[CalibrationSpec]):
    """ECE, the most confident bin's overconfidence and the Brier score, with a reliability diagram."""

    spec_type = CalibrationSpec

    def run(self, spec: CalibrationSpec, context: CheckContext) -> Measurement:
        whole = context.full_selection if context.full_selection is not None else context.data.selected
        sub = context.diagnostic_context(len(whole))
        if sub is None:
            return deferred_to_first_shard(context)
        scores, labels, predictions = _session_scores(sub, spec)
        probabilities, taken_from = _probabilities(scores, sub)
        rows = np.arange(len(labels))
        confidence = np.clip(probabilities[rows, predictions], 0.0, 1.0)
        correct = sub.task.correct(torch.from_numpy(predictions), torch.from_numpy(labels)).numpy()
        values = {
            "ece": calibration.expected_calibration_error(confidence, correct, spec.bins),
            "max_overconfidence": calibration.max_overconfidence(confidence, correct, spec.bins),
            "brier": calibration.brier_score(probabilities, labels),
        }
        table = calibration.reliability_table(confidence, correct, spec.bins)
        interval = _interval(spec, context, probabilities, labels, confidence, correct)
        plot = write_reliability_png(
            sub.artifact_path(spec.id, "reliability.png"), table, values["ece"], title=spec.id
        )
        scores_were = "probabilities" if taken_from is not None else "logits"
        details: dict[str, object] = {
            **values,
            "bins": len(table),
            "scores": scores_were,
            "probabilities_from": taken_from,
            "accuracy": float(correct.mean()),
            "mean_confidence": float(confidence.mean()),
            "reliability": [vars(row) for row in table],
        }
        if len(table) < spec.bins:
            details["bins_requested"] = spec.bins
        return Measurement(
            value=values[spec.metric],
            n=len(labels),
            interval=interval,
            details=details,
            artifacts=[plot],
            message=_message(values, details, taken_from),
        )


def _interval(
    spec: CalibrationSpec,
    context: CheckContext,
    probabilities: np.ndarray,
    labels: np.ndarray,
    confidence: np.ndarray,
    correct: np.ndarray,
) -> Interval | None:
    """The chosen metric's seeded bootstrap interval at the policy's confidence (None with ``confidence: null``)."""
    level = context.policy.confidence
    if level is None:
        return None
    if spec.metric == "brier":
        return calibration.brier_interval(probabilities, labels, level, seed=context.seed)
    bootstrap = BINNED_INTERVALS[spec.metric]
    return bootstrap(confidence, correct, spec.bins, level, seed=context.seed)


def _session_scores(sub: CheckContext, spec: CalibrationSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The session's scores ``[N, C]``, labels and predictions on the whole selection, in data order."""

    def score_batch(batch: Batch, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = sub.model.scores(batch.x)
        columns = {"label": batch.y, "prediction": sub.task.predict(scores)}
        # One column per class: per-sample results are 1-D, and resume stores them batch by batch.
        columns.update({f"score_{c}": scores[:, c] for c in range(scores.shape[1])})
        return columns

    columns = sub.per_sample(f"{spec.id}: scores", score_batch)
    if not columns:
        raise CheckError("the evaluation data selected no samples")
    classes = sum(name.startswith("score_") for name in columns)
    scores = torch.stack([columns[f"score_{c}"] for c in range(classes)], dim=1).double().numpy()
    return scores, columns["label"].numpy().astype(np.int64), columns["prediction"].numpy().astype(np.int64)


def _probabilities(scores: np.ndarray, sub: CheckContext) -> tuple[np.ndarray, str | None]:
    """Class probabilities, and what showed the scores already were some (None: softmax of logits)."""
    taken_from = sub.model.probabilities_from if sub.model.scores_are_probabilities else None
    if taken_from is None and bool(looks_like_probabilities(torch.from_numpy(scores)).all()):
        taken_from = "every row of the scores lies in [0, 1] and sums to 1"
    if taken_from is None:
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True), None
    clipped = np.clip(scores, 0.0, 1.0)
    sums = clipped.sum(axis=1, keepdims=True)
    if np.any(sums <= 0):
        raise CheckError(
            f"the model outputs probabilities ({taken_from}), but {int((sums <= 0).sum())} rows are all zero; "
            "expected each row to give some class a positive probability"
        )
    # A softmax's rows sum to 1 up to float32 rounding; a per-class sigmoid's are renormalised to one.
    return clipped / sums, taken_from


def _message(values: dict[str, float], details: dict[str, object], taken_from: str | None) -> str:
    if taken_from is None:
        source = "confidence is the softmax probability of the predicted class (from the model's logits)"
    else:
        source = f"a model that outputs probabilities is taken as such ({taken_from})"
    return (
        f"ECE {values['ece']:.4f} over {details['bins']} equal-mass bins, max overconfidence "
        f"{values['max_overconfidence']:.4f}, Brier {values['brier']:.4f}; accuracy "
        f"{details['accuracy']:.4f} at mean confidence {details['mean_confidence']:.4f}; {source}"
    )
