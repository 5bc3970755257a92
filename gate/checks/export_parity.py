"""Check kind ``export_parity``: does the exported ONNX model decide like its source?

Metric: the share of samples on which the source model (or, for an ONNX-only model, its PyTorch twin) and
the ONNX Runtime session pick the same class, both on the sample and on a copy with uniform noise of
radius ``noise`` (a deployed model sees such inputs, and export bugs often hide off the data manifold). ``max_abs_diff``
bounds the largest logit difference seen.
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

        def compare_batch(batch: Batch, rows: torch.Tensor) -> dict[str, torch.Tensor]:
            noise = SampleRandom(batch.index, (context.seed, NOISE_STREAM)).uniform(0, batch.x.shape[1:])
            noisy = (batch.x + (noise.to(batch.x.dtype) * 2 - 1) * radius).clamp(low, high)
            columns = {}
            for inputs, name in ((batch.x, "clean"), (noisy, "noisy")):
                deployed, source = context.model.scores(inputs), context.model.source_scores(inputs)
                columns[f"agree_{name}"] = context.task.predict(deployed) == context.task.predict(source)
                columns[f"max_diff_{name}"] = (deployed - source).abs().flatten(1).amax(dim=1).float()
            return columns

        columns = context.per_sample(f"{spec.id}: export parity", compare_batch)
        if not columns:
            raise CheckError("the evaluation data selected no samples")
        clean, noisy_agree = columns["agree_clean"], columns["agree_noisy"]
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
            },
            message=f"ONNX Runtime vs {reference}; max |Δlogit| = {max_diff:.3g}",
            violations=violations,
        )
