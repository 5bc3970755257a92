"""Check kind ``model_sanity``: does the model behave so that an evaluation of it can mean anything?

An attack or an accuracy number assumes a deterministic function from one input to logits. Following
AutoAttack's own checks (``autoattack/checks.py``: randomised models, softmax outputs, zero gradients)
and the "unstable predictions" and "unavailable gradients" indicators of attack failure of Pintor et al.
2022 ("Indicators of Attack Failure", NeurIPS), this check names each of these that fires, with its
numbers:

- ``nondeterministic_outputs``: two identical passes over the same inputs give different logits, in the
  ONNX Runtime session or in the gradient model (e.g. dropout kept active, noise injected at inference);
  attacks then need EoT and every number varies from run to run;
- ``probability_outputs``: the outputs are probabilities of some kind rather than logits: softmax rows
  (in [0, 1], summing to 1), log-probabilities (logsumexp 0), or outputs bounded in [0, 1] on every
  sample (a per-class sigmoid, a clip); a cross-entropy on them saturates its gradients. The finding says
  whether gate attacks through the logits before a final Sigmoid or Softmax, or cannot;
- ``batch_size_dependence``: a sample scores differently alone than in a batch (e.g. BatchNorm on batch
  statistics), so the attacked batch is not the model that ships;
- ``zero_or_nan_gradients``: input gradients of the cross-entropy loss are zero or not finite on more
  than ``tolerance`` of the samples (e.g. rounding or ``sign`` inside the model), so gradient attacks
  cannot move;
- ``disconnected_gradients``: the loss does not depend differentiably on the input at all (a
  ``detach()``, an integer cast, a preprocessing step outside torch); only an adaptive attack (BPDA) can
  evaluate such a model.

Two passes, or a sample alone and in a batch, give "the same" logits when they differ by at most
``max_abs_diff`` plus :data:`RELATIVE_TOLERANCE` times the sample's largest logit: float32 kernels round
differently at different batch sizes, and that rounding grows with the logits' scale.

Metric: the number of findings (``max: 0`` by default), on the first ``diagnostic_samples`` samples of the
whole selection (in a sharded run, shard 1 runs it for every shard).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gate.checks.base import CheckContext, CheckKind, deferred_to_first_shard
from gate.measurement import Measurement
from gate.model.gradient_probe import GradientProbe, probe_input_gradients
from gate.model.squashing import (
    PROBABILITY_ATOL,
    UNDONE,
    looks_like_log_probabilities,
    looks_like_probabilities,
    unit_interval_rows,
)
from gate.policy.specs import ModelSanitySpec
from gate.report.model import Finding

__all__ = [
    "PROBABILITY_ATOL",
    "RELATIVE_TOLERANCE",
    "ModelSanityCheck",
    "dead_gradients",
    "differs",
    "disconnected_finding",
    "looks_like_log_probabilities",
    "looks_like_probabilities",
    "per_sample_difference",
    "unit_interval_rows",
]

# More than this share of the rows must be softmax rows or log-probabilities before the outputs are
# called so. Bounded outputs must be bounded on every sample: a logit model rarely keeps all its logits
# in [0, 1] on one sample, let alone on all of them.
PROBABILITY_SHARE = 0.5

# Of a sample's largest |logit|. Measured on the digits CNN with its logits times 1e4 (about 1.5e5): a
# sample alone and in a batch of 128 differ by up to 3.1e-7 of that in PyTorch on CPU (0.047, far above
# an absolute 1e-3; float32 eps is 1.2e-7) and not at all in ONNX Runtime. 1e-5 leaves a factor 30 for
# longer reductions and other kernels, while a BatchNorm on batch statistics or x + 0.1·randn moves
# logits by percents of their scale.
RELATIVE_TOLERANCE = 1e-5

Scorer = Callable[[torch.Tensor], torch.Tensor]


def per_sample_difference(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The largest absolute logit difference of each sample (``inf`` where a value is not finite)."""
    difference = (first.float() - second.float()).abs()
    difference = torch.where(torch.isnan(difference), torch.full_like(difference, torch.inf), difference)
    return difference.amax(dim=1)


def _row_scale(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Each sample's largest |logit| in either tensor (0 where that is not finite)."""
    scale = torch.maximum(first.float().abs().amax(dim=1), second.float().abs().amax(dim=1))
    return torch.where(torch.isfinite(scale), scale, torch.zeros_like(scale))


def differs(first: torch.Tensor, second: torch.Tensor, max_abs_diff: float) -> torch.Tensor:
    """Per sample: some logit differs by more than ``max_abs_diff`` plus :data:`RELATIVE_TOLERANCE` times
    the sample's largest |logit| (in either tensor). NaN or infinite differences always differ."""
    tolerance = max_abs_diff + RELATIVE_TOLERANCE * _row_scale(first, second)
    return per_sample_difference(first, second) > tolerance


def relative_difference(first: torch.Tensor, second: torch.Tensor) -> float:
    """The largest logit difference relative to its sample's largest |logit| (for the report)."""
    scale = _row_scale(first, second).clamp_min(torch.finfo(torch.float32).tiny)
    ratio = per_sample_difference(first, second) / scale
    return float(ratio.max()) if len(ratio) else 0.0


def dead_gradients(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per sample: the input gradient of the cross-entropy loss is zero or not finite, or does not exist
    (a graph disconnected from the input); :func:`probe_input_gradients` tells the two apart."""
    return probe_input_gradients(module, x, y).dead


def _batched(scorer: Scorer, batch_size: int) -> Scorer:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([scorer(chunk) for chunk in torch.split(x, batch_size)])

    return run


class ModelSanityCheck(CheckKind[ModelSanitySpec]):
    spec_type = ModelSanitySpec

    def run(self, spec: ModelSanitySpec, context: CheckContext) -> Measurement:
        sub = context.diagnostic_context(spec.diagnostic_samples)
        if sub is None:  # a whole-set diagnostic: shard 1 runs it for every shard
            return deferred_to_first_shard(context)
        batches = list(sub.data.batches(context.batch_size, context.device))
        x = torch.cat([batch.x for batch in batches])
        y = torch.cat([batch.y for batch in batches])
        module = context.model.gradient_model
        scorers: dict[str, Scorer] = {"onnx": _batched(context.model.scores, context.batch_size)}
        if module is not None:
            module = module.to(context.device).eval()
            scorers["gradient model"] = _batched(module, context.batch_size)
        details: dict[str, object] = {"samples": len(x), "max_abs_diff": spec.max_abs_diff}
        if module is None:
            details["gradient_model"] = f"unavailable ({context.model.gradient_unavailable_reason})"

        first = {name: scorer(x) for name, scorer in scorers.items()}
        context.check_deadline()
        findings: list[Finding] = []
        unstable = self._nondeterminism(spec, scorers, first, x, details, findings)
        context.check_deadline()
        self._probabilities(first["onnx"], context, details, findings)
        stable = {name: scorer for name, scorer in scorers.items() if name not in unstable}
        self._batch_dependence(spec, stable, first, x, details, findings, context)
        if module is not None:
            self._gradients(spec, module, x, y, context, details, findings)
        message = (
            "; ".join(f.code for f in findings) if findings else "no sign of a model that evades evaluation"
        )
        incomplete = []
        if module is None:
            message += "; gradient diagnostics skipped: no differentiable model"
            incomplete.append(
                f"the gradient diagnostics did not run: {context.model.gradient_unavailable_reason}"
            )
            details["incomplete"] = incomplete  # gate merge re-judges shard 1's result from its details
        return Measurement(
            value=float(len(findings)), n=len(x), findings=findings, details=details, message=message,
            incomplete=incomplete,
        )  # fmt: skip

    def _nondeterminism(
        self,
        spec: ModelSanitySpec,
        scorers: dict[str, Scorer],
        first: dict[str, torch.Tensor],
        x: torch.Tensor,
        details: dict,
        findings: list[Finding],
    ) -> set[str]:
        second = {name: scorer(x) for name, scorer in scorers.items()}
        differences = {name: per_sample_difference(first[name], second[name]) for name in scorers}
        details["repeat_max_abs_diff"] = {name: float(d.max()) for name, d in differences.items()}
        details["repeat_max_rel_diff"] = {
            name: relative_difference(first[name], second[name]) for name in scorers
        }
        counts = {name: int(differs(first[name], second[name], spec.max_abs_diff).sum()) for name in scorers}
        unstable = {name: differences[name] for name, count in counts.items() if count}
        if unstable:
            affected = {name: counts[name] for name in unstable}
            where = ", ".join(
                f"the {name} on {count} of {len(x)} samples (up to {float(unstable[name].max()):.3g})"
                for name, count in affected.items()
            )
            findings.append(
                Finding(
                    code="nondeterministic_outputs",
                    message=f"two identical passes gave different logits: {where}; attacks need "
                    "expectation over transformation and every number varies between runs",
                    data={
                        "producers": sorted(unstable),
                        "samples": affected,
                        "max_abs_diff": {name: float(d.max()) for name, d in unstable.items()},
                    },
                )
            )
        return set(unstable)

    def _probabilities(
        self, scores: torch.Tensor, context: CheckContext, details: dict, findings: list[Finding]
    ) -> None:
        shares = {
            "probabilities": float(looks_like_probabilities(scores).float().mean()),
            "log_probabilities": float(looks_like_log_probabilities(scores).float().mean()),
            "bounded": float(unit_interval_rows(scores).float().mean()),
        }
        details["probability_rows"] = shares
        if shares["probabilities"] > PROBABILITY_SHARE:
            kind, what = "probabilities", "in [0, 1] summing to 1"
        elif shares["log_probabilities"] > PROBABILITY_SHARE:
            kind, what = "log_probabilities", "with logsumexp 0"
        elif shares["bounded"] == 1.0:
            kind, what = "bounded", "in [0, 1] without summing to 1, as a per-class sigmoid gives"
        else:
            return
        squashing = context.model.output_squashing
        if kind == "log_probabilities":
            consequence = "a cross-entropy on them equals the one on logits, so attacks are unaffected"
        elif squashing in UNDONE:
            consequence = (
                f"a cross-entropy on them saturates; gate's gradient checks use the logits before the "
                f"model's final {squashing} instead"
            )
        elif getattr(context.model, "logits_recovered", False):
            consequence = (
                f"a cross-entropy on them saturates; gate's gradient checks use {context.model.logits_from} "
                "instead"
            )
        else:
            consequence = (
                "a cross-entropy on them saturates, and the graph ends in no Sigmoid or Softmax gate can "
                "look behind, so white-box adversarial checks end as error"
            )
        share = shares[kind]
        outputs = "values bounded in [0, 1]" if kind == "bounded" else kind.replace("_", "-")
        findings.append(
            Finding(
                code="probability_outputs",
                message=f"the model outputs {outputs}, not logits ({share:.0%} of rows are {what}); "
                f"{consequence}",
                data={"kind": kind, "share": share, "squashing": squashing},
            )
        )

    def _batch_dependence(
        self,
        spec: ModelSanitySpec,
        scorers: dict[str, Scorer],
        batched: dict[str, torch.Tensor],
        x: torch.Tensor,
        details: dict,
        findings: list[Finding],
        context: CheckContext,
    ) -> None:
        differences: dict[str, float] = {}
        affected: dict[str, int] = {}
        failures: dict[str, str] = {}
        relative: dict[str, float] = {}
        for name, scorer in scorers.items():
            context.check_deadline()
            try:
                alone = torch.cat([scorer(x[i : i + 1]) for i in range(len(x))])
            except Exception as error:  # e.g. BatchNorm on batch statistics refuses a batch of one
                failures[name] = f"{type(error).__name__}: {str(error)[:200]}"
                continue
            differences[name] = float(per_sample_difference(batched[name], alone).max())
            relative[name] = relative_difference(batched[name], alone)
            count = int(differs(batched[name], alone, spec.max_abs_diff).sum())
            if count:
                affected[name] = count
        details["alone_vs_batch_max_abs_diff"] = differences
        details["alone_vs_batch_max_rel_diff"] = relative
        if not affected and not failures:
            return
        parts = [
            f"the {name} on {count} of {len(x)} samples (up to {differences[name]:.3g})"
            for name, count in affected.items()
        ]
        parts += [f"the {name} fails on a batch of one ({reason})" for name, reason in failures.items()]
        findings.append(
            Finding(
                code="batch_size_dependence",
                message="samples score differently alone than in a batch: "
                + "; ".join(parts)
                + " (e.g. BatchNorm on batch statistics); the attacked batch is not the model that ships",
                data={"samples": affected, "max_abs_diff": differences, "failures": failures},
            )
        )

    def _gradients(
        self,
        spec: ModelSanitySpec,
        module: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        context: CheckContext,
        details: dict,
        findings: list[Finding],
    ) -> None:
        probes: list[GradientProbe] = []
        for chunk_x, chunk_y in zip(
            torch.split(x, context.batch_size), torch.split(y, context.batch_size), strict=True
        ):
            context.check_deadline()
            probes.append(probe_input_gradients(module, chunk_x, chunk_y))
        disconnected = any(probe.disconnected for probe in probes)
        dead = sum(int(probe.dead.sum()) for probe in probes)
        fraction = dead / max(len(x), 1)
        details["zero_or_nan_gradient_fraction"] = fraction
        details["gradients_disconnected"] = disconnected
        if disconnected:
            findings.append(disconnected_finding())
        elif fraction > spec.tolerance:
            findings.append(
                Finding(
                    code="zero_or_nan_gradients",
                    message=f"the loss gradient is zero or not finite on {dead} of {len(x)} samples "
                    f"(tolerance {spec.tolerance:g}); gradient attacks cannot move (e.g. rounding or sign "
                    "inside the model)",
                    data={"samples": dead, "total": len(x), "fraction": fraction},
                )
            )


def disconnected_finding() -> Finding:
    """The finding for a loss that does not depend differentiably on the input (shared with
    gradient_masking, which finds the same thing before it attacks)."""
    return Finding(
        code="disconnected_gradients",
        message="the model's outputs do not depend differentiably on its input (a detach(), an integer "
        "cast or a non-differentiable preprocessing step): the input gradient does not exist, so gradient "
        "attacks cannot move; an adaptive attack (BPDA, Athalye et al. 2018) is needed to evaluate it",
        data={"disconnected": True},
    )
