"""Check kind ``gradient_masking``: is the white-box robustness number trustworthy?

A robust-looking model may only be hiding its gradients (Athalye et al. 2018, "Obfuscated Gradients Give
a False Sense of Security"). Following Carlini et al. 2019 ("On Evaluating Adversarial Robustness") this
check runs four diagnostics and names each that fires, with its numbers:

- ``blackbox_beats_whitebox``: Square, which needs no gradients, breaks samples the white-box attack
  could not;
- ``sweep_not_monotonic`` / ``unbounded_attack_fails``: robust accuracy must fall as ε grows and reach
  about zero when ε covers the whole input range;
- ``attack_not_converged``: five times the steps and two more restarts keep lowering robust accuracy;
- ``zero_or_nan_gradients``: input gradients of the loss are zero or not finite on many samples;
- ``disconnected_gradients``: the loss does not depend differentiably on the input at all (a ``detach()``
  in front of the model); no gradient attack can run, so the other diagnostics are skipped and the
  details say so.

Sweep budgets above the one that covers the whole input range (its width in L∞, width·√d in L2, the
box's diameter) are the same attack as that one, so they are clipped to it.

Metric: the number of findings (``max: 0`` by default). The costlier diagnostics use the first
``diagnostic_samples`` samples.
"""

from __future__ import annotations

import math

import torch

from gate.attacks.catalogue import CATALOGUE
from gate.attacks.registry import build_attack
from gate.checks.adversarial import run_attack
from gate.checks.base import CheckContext, CheckKind, deferred_to_first_shard
from gate.checks.evidence import save_curve
from gate.checks.model_sanity import disconnected_finding
from gate.measurement import Measurement
from gate.model.gradient_probe import probe_input_gradients
from gate.policy.specs import GradientMaskingSpec
from gate.report.model import Finding

SKIPPED_WHEN_DISCONNECTED = "white-box attack, black-box comparison, ε sweep and more-effort attack"


def whole_range_budget(norm: str, bounds: tuple[float, float], sample_size: int) -> float:
    """The budget that reaches every point of the input range from any other: a larger one adds nothing."""
    width = bounds[1] - bounds[0]
    return width if norm == "linf" else width * math.sqrt(sample_size)


def default_sweep(spec: GradientMaskingSpec, bounds: tuple[float, float], sample_size: int) -> list[float]:
    """0.25x to 4x the budget, then a budget that covers the whole input range (nothing can resist it);
    clipped to the last, so an L∞ 4x of 0.3 on a range 1 wide is not quoted as ε=1.2."""
    unbounded = whole_range_budget(spec.norm, bounds, sample_size)
    factors = (0.25, 0.5, 1.0, 2.0, 4.0)
    return clipped_sweep([*(spec.epsilon * factor for factor in factors), unbounded], unbounded)


def clipped_sweep(epsilons: list[float], whole_range: float) -> list[float]:
    """The budgets in increasing order, each at most ``whole_range``, without repeats."""
    return sorted({min(float(eps), whole_range) for eps in epsilons})


def describe_budget(epsilon: float, whole_range: float) -> str:
    """``ε=0.2``, or what a budget that covers the whole input range means (its number alone, width·√d
    in L2, tells a reader nothing)."""
    if epsilon >= whole_range:
        return f"ε covering the whole input range ({epsilon:.4g})"
    return f"ε={epsilon:.4g}"


class GradientMaskingCheck(CheckKind[GradientMaskingSpec]):
    spec_type = GradientMaskingSpec

    def run(self, spec: GradientMaskingSpec, context: CheckContext) -> Measurement:
        sub = context.diagnostic_context(spec.diagnostic_samples)
        if sub is None:
            return deferred_to_first_shard(context)
        subset = sub.data.selected
        bounds = context.policy.input.range
        findings: list[Finding] = []
        details: dict[str, object] = {"samples": len(subset), "tolerance": spec.tolerance}

        def robust_accuracy(
            epsilon: float, steps: int, restarts: int, label: str, only: torch.Tensor | None = None
        ):
            attack = build_attack(
                spec.attack, norm=spec.norm, epsilon=epsilon, bounds=bounds, seed=context.seed,
                steps=steps, restarts=restarts, num_classes=context.model.num_classes,
            )  # fmt: skip
            return run_attack(attack, sub, label=label, only=only)

        # First, and cheap: with no input gradient at all every gradient attack would raise.
        gradient_findings = self._gradients(spec, sub, details)
        artifacts = []
        if details["gradients_disconnected"]:
            details["not_run"] = f"{SKIPPED_WHEN_DISCONNECTED}: the loss has no input gradient"
        else:
            base = robust_accuracy(spec.epsilon, spec.steps, spec.restarts, f"{spec.id}: white-box")
            robust, index = base.tensor("robust"), base.tensor("index")
            robust_index = index[robust]
            details["whitebox_robust_accuracy"] = float(robust.float().mean())

            findings += self._blackbox(spec, sub, robust_index, details)
            sweep_findings, sweep_plot = self._sweep(spec, context, robust_accuracy, details)
            findings += sweep_findings
            artifacts.append(sweep_plot)
            findings += self._effort(spec, robust_accuracy, robust_index, len(subset), details)
        findings += gradient_findings
        message = "; ".join(f.code for f in findings) if findings else "no sign of gradient masking"
        if "blackbox_not_run" in details:
            message += f" (black-box comparison not run: {details['blackbox_not_run']})"
        if "not_run" in details:
            message += f" ({details['not_run']}: not run)"
        return Measurement(
            value=float(len(findings)),
            n=len(subset),
            findings=findings,
            details=details,
            artifacts=artifacts,
            message=message,
        )

    def _blackbox(self, spec, sub: CheckContext, robust_index: torch.Tensor, details: dict) -> list[Finding]:
        if sub.task.name not in CATALOGUE["square"].tasks:
            # Square's windows are defined on images; a task without a black-box attack of its own gets
            # the other three diagnostics, and the report says which one it could not run.
            details["blackbox_not_run"] = (
                f"no black-box attack for the task {sub.task.name} ({sub.task.inputs}): Square needs images"
            )
            return []
        if len(robust_index) == 0:
            details["blackbox_broken_fraction"] = 0.0
            return []
        square = build_attack(
            "square", norm=spec.norm, epsilon=spec.epsilon, bounds=sub.policy.input.range, seed=sub.seed,
            queries=spec.queries, num_classes=sub.model.num_classes,
        )  # fmt: skip
        run = run_attack(square, sub, label=f"{spec.id}: black-box", only=robust_index)
        broken = int((~run.tensor("robust")).sum())
        # Judged against all diagnosed samples, like the other diagnostics: a robust-accuracy drop, so a
        # handful of survivors of a strong white-box attack cannot make one lucky break look like masking.
        fraction = broken / len(sub.data)
        details["blackbox_broken_fraction"] = fraction
        if fraction <= spec.tolerance:
            return []
        return [
            Finding(
                code="blackbox_beats_whitebox",
                message=f"Square ({spec.queries} queries) broke {broken} of the {len(robust_index)} samples that "
                f"{spec.attack} could not, lowering robust accuracy by {fraction:.3f}: the gradients mislead the "
                "white-box attack",
                data={"broken": broken, "whitebox_robust": len(robust_index), "fraction": fraction},
            )
        ]

    def _sweep(self, spec, context: CheckContext, robust_accuracy, details: dict) -> list[Finding]:
        bounds = context.policy.input.range
        sample_size = math.prod(context.data.sample_shape)
        whole = whole_range_budget(spec.norm, bounds, sample_size)
        epsilons = clipped_sweep(spec.sweep or default_sweep(spec, bounds, sample_size), whole)
        accuracies = [
            float(
                robust_accuracy(eps, spec.steps, 1, f"{spec.id}: sweep {describe_budget(eps, whole)}")
                .tensor("robust")
                .float()
                .mean()
            )
            for eps in epsilons
        ]
        details["sweep"] = {"epsilon": epsilons, "robust_accuracy": accuracies, "whole_range": whole}
        path = context.artifact_path(spec.id, "epsilon-sweep.png")
        plot = save_curve(
            path, epsilons, accuracies, x_label=f"ε ({spec.norm})", y_label="robust accuracy",
            title=f"{spec.attack}: robust accuracy against ε",
        )  # fmt: skip
        findings = []
        rises = [
            (epsilons[i], epsilons[i + 1], accuracies[i], accuracies[i + 1])
            for i in range(len(epsilons) - 1)
            if accuracies[i + 1] > accuracies[i] + spec.tolerance
        ]
        if rises:
            low, high, before, after = rises[0]
            findings.append(
                Finding(
                    code="sweep_not_monotonic",
                    message=f"robust accuracy rose from {before:.3f} at {describe_budget(low, whole)} to "
                    f"{after:.3f} at {describe_budget(high, whole)}",
                    data={"rises": [list(r) for r in rises]},
                )
            )
        if accuracies[-1] > spec.tolerance:
            findings.append(
                Finding(
                    code="unbounded_attack_fails",
                    message=f"at {describe_budget(epsilons[-1], whole)} robust accuracy is still "
                    f"{accuracies[-1]:.3f}; an attack with that budget should reach about zero",
                    data={"epsilon": epsilons[-1], "robust_accuracy": accuracies[-1]},
                )
            )
        return findings, plot

    def _effort(
        self, spec, robust_accuracy, robust_index: torch.Tensor, total: int, details: dict
    ) -> list[Finding]:
        if len(robust_index) == 0:
            details["stronger_attack_drop"] = 0.0
            return []
        steps, restarts = spec.steps * 5, spec.restarts + 2
        run = robust_accuracy(spec.epsilon, steps, restarts, f"{spec.id}: more effort", only=robust_index)
        newly_broken = int((~run.tensor("robust")).sum())
        drop = newly_broken / total
        details["stronger_attack_drop"] = drop
        if drop <= spec.tolerance:
            return []
        return [
            Finding(
                code="attack_not_converged",
                message=f"{steps} steps and {restarts} restarts lowered robust accuracy by a further {drop:.3f}",
                data={"steps": steps, "restarts": restarts, "drop": drop},
            )
        ]

    def _gradients(self, spec, sub: CheckContext, details: dict) -> list[Finding]:
        module = sub.model.require_gradient_model().to(sub.device).eval()
        dead = total = 0
        disconnected = False
        for batch in sub.data.batches(sub.batch_size, sub.device):
            sub.check_deadline()
            probe = probe_input_gradients(module, batch.x, batch.y)
            disconnected |= probe.disconnected
            dead += int(probe.dead.sum())
            total += len(batch.x)
        fraction = dead / max(total, 1)
        details["zero_or_nan_gradient_fraction"] = fraction
        details["gradients_disconnected"] = disconnected
        if disconnected:
            return [disconnected_finding()]
        if fraction <= spec.tolerance:
            return []
        return [
            Finding(
                code="zero_or_nan_gradients",
                message=f"the loss gradient is zero or not finite on {dead} of {total} samples",
                data={"samples": dead, "total": total, "fraction": fraction},
            )
        ]
