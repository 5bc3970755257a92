"""Check kind ``export_parity``: does the exported ONNX model decide like its source?

Metric: the share of samples on which the source model (or, for an ONNX-only model, its PyTorch twin) and
the ONNX Runtime session pick the same class, both on the sample and on a copy with uniform noise of
radius ``noise`` (a deployed model sees such inputs, and export bugs often hide off the data manifold). ``max_abs_diff``
bounds the largest logit difference seen.

A model with a label output of its own (a converted scikit-learn model) is also compared with itself:
the class gate reads from the scores it judges must be the label the deployed model returns. For an
ONNX-only model with no twin (a tree ensemble) that comparison is the whole check. With a policy's
``features`` section the noise is per feature (``noise`` times the feature's scale, inside its range),
the standardised units of the feature-space budgets.
"""

from __future__ import annotations

import torch

from gate.checks.base import CheckContext, CheckKind
from gate.data.evaldata import Batch
from gate.errors import CheckError
from gate.measurement import Measurement
from gate.policy.model import Policy
from gate.policy.specs import AdversarialSpec, ExportParitySpec, GradientMaskingSpec
from gate.randomness.streams import SampleRandom

NOISE_STREAM = 0x5EED_0001


def default_noise_radius(policy: Policy) -> float:
    """The smallest L-inf budget the policy attacks with, else 1/255 of the input range."""
    epsilons = [
        check.epsilon
        for check in policy.checks
        if isinstance(check, AdversarialSpec | GradientMaskingSpec) and check.norm == "linf"
    ]
    low, high = policy.input.range
    return min(epsilons) if epsilons else (high - low) / 255


class ExportParityCheck(CheckKind[ExportParitySpec]):
    spec_type = ExportParitySpec

    def run(self, spec: ExportParitySpec, context: CheckContext) -> Measurement:
        radius = spec.noise if spec.noise is not None else default_noise_radius(context.policy)
        low, high = context.policy.input.range
        space = context.features
        model = context.model
        with_source, with_label = model.has_source_module, model.label_output is not None
        if not with_source:
            _refuse_without_twin(spec, context)

        def compare_batch(batch: Batch, rows: torch.Tensor) -> dict[str, torch.Tensor]:
            noise = SampleRandom(batch.index, (context.seed, NOISE_STREAM)).uniform(0, batch.x.shape[1:])
            noise = (noise.to(batch.x.dtype) * 2 - 1) * radius
            if space is not None and space.declared:
                # Per-feature units and ranges: the radius is standardised, like the feature-space budgets.
                on = space.on(batch.x.device)
                noisy = torch.maximum(torch.minimum(batch.x + noise * on.scale, on.high), on.low)
            else:
                noisy = (batch.x + noise).clamp(low, high)
            columns = {}
            for inputs, name in ((batch.x, "clean"), (noisy, "noisy")):
                deployed = model.scores(inputs)
                predicted = context.task.predict(deployed)
                if with_source:
                    source = model.source_scores(inputs)
                    columns[f"agree_{name}"] = predicted == context.task.predict(source)
                    columns[f"max_diff_{name}"] = (deployed - source).abs().flatten(1).amax(dim=1).float()
                if with_label:
                    own = model.decisions(inputs)
                    columns[f"label_agree_{name}"] = predicted == own.to(predicted.device)
            return columns

        columns = context.per_sample(f"{spec.id}: export parity", compare_batch)
        if not columns:
            raise CheckError("the evaluation data selected no samples")
        if not with_source:
            return _label_only(columns, radius)
        clean, noisy_agree = columns["agree_clean"], columns["agree_noisy"]
        label_details: dict[str, float] = {}
        label_words = ""
        if with_label:
            label_clean, label_noisy = columns["label_agree_clean"], columns["label_agree_noisy"]
            label_details = _label_details(label_clean, label_noisy)
            differing = int((~label_clean).sum() + (~label_noisy).sum())
            label_words = (
                f"; the model's label output differs from its scores' class {differing} time(s)"
                if differing
                else "; the model's label output matches its scores' class everywhere"
            )
            clean, noisy_agree = clean & label_clean, noisy_agree & label_noisy
        max_diff_clean = float(columns["max_diff_clean"].max())
        max_diff_noisy = float(columns["max_diff_noisy"].max())
        max_diff = max(max_diff_clean, max_diff_noisy)
        violations = []
        if spec.max_abs_diff is not None and max_diff > spec.max_abs_diff:
            violations.append(
                f"the largest logit difference {max_diff:.3g} is above max_abs_diff {spec.max_abs_diff:.3g}"
            )
        reference = "its PyTorch twin" if context.model.source_kind == "onnx" else "the source model"
        return Measurement.proportion(
            clean & noisy_agree,
            details={
                "compared_with": reference,
                "agreement_clean": float(clean.float().mean()),
                "agreement_noisy": float(noisy_agree.float().mean()),
                "noise_radius": radius,
                "max_abs_diff_clean": max_diff_clean,
                "max_abs_diff_noisy": max_diff_noisy,
                "disagreeing_samples": int((~clean).sum() + (~noisy_agree).sum()),
                **label_details,
            },
            message=f"ONNX Runtime vs {reference}; max |Δlogit| = {max_diff:.3g}{label_words}",
            violations=violations,
        )


def _refuse_without_twin(spec: ExportParitySpec, context: CheckContext) -> None:
    """Without a PyTorch module only the model's own label output can be compared, and no logit difference."""
    reason = context.model.gradient_unavailable_reason
    if context.model.label_output is None:
        raise CheckError(
            "export parity compares the ONNX Runtime session with a PyTorch module (the source, or the twin "
            f"of an ONNX-only model), and there is none: {reason}; nor has the model a label output to "
            "compare its scores with"
        )
    if spec.max_abs_diff is not None:
        raise CheckError(
            "max_abs_diff bounds the logit difference between the session and a PyTorch module, and this "
            f"model has none ({reason}); remove max_abs_diff, export parity then compares the model's label "
            "output with its scores"
        )


def _label_details(clean: torch.Tensor, noisy: torch.Tensor) -> dict[str, float]:
    return {
        "label_agreement_clean": float(clean.float().mean()),
        "label_agreement_noisy": float(noisy.float().mean()),
    }


def _label_only(columns: dict[str, torch.Tensor], radius: float) -> Measurement:
    clean, noisy = columns["label_agree_clean"], columns["label_agree_noisy"]
    return Measurement.proportion(
        clean & noisy,
        details={
            "compared_with": "the model's own label output",
            **_label_details(clean, noisy),
            "noise_radius": radius,
            "disagreeing_samples": int((~clean).sum() + (~noisy).sum()),
        },
        message="nothing was exported and there is no twin; the deployed label output is compared with "
        "the scores gate judges",
    )
