"""Check kind ``export_parity``: does the exported ONNX model decide like its source?

Metric: the share of samples on which the source model (or, for an ONNX-only model, its PyTorch twin) and
the ONNX Runtime session pick the same class, both on the sample and on a copy with uniform noise of
radius ``noise`` (a deployed model sees such inputs, and export bugs often hide off the data manifold). ``max_abs_diff``
bounds the largest logit difference seen.
"""

from __future__ import annotations

import torch

from gate.checks.base import CheckContext, CheckKind
from gate.measurement import Measurement
from gate.policy.checks import AdversarialSpec, ExportParitySpec, GradientMaskingSpec
from gate.policy.model import Policy
from gate.sample_random import SampleRandom

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
        agree_clean, agree_noisy, max_diff_clean, max_diff_noisy = [], [], 0.0, 0.0
        total = len(context.data)
        with context.progress.task(f"{spec.id}: export parity", total) as progress:
            for batch in context.data.batches(context.batch_size, context.device):
                context.check_deadline()
                noise = SampleRandom(batch.index, (context.seed, NOISE_STREAM)).uniform(0, batch.x.shape[1:])
                noisy = (batch.x + (noise.to(batch.x.dtype) * 2 - 1) * radius).clamp(low, high)
                for inputs, agreements, name in (
                    (batch.x, agree_clean, "clean"),
                    (noisy, agree_noisy, "noisy"),
                ):
                    deployed, source = context.model.scores(inputs), context.model.source_scores(inputs)
                    agreements.append(deployed.argmax(1) == source.argmax(1))
                    difference = float((deployed - source).abs().max())
                    if name == "clean":
                        max_diff_clean = max(max_diff_clean, difference)
                    else:
                        max_diff_noisy = max(max_diff_noisy, difference)
                progress.advance(len(batch))
        clean, noisy_agree = torch.cat(agree_clean), torch.cat(agree_noisy)
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
