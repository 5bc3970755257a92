"""Check kind ``gradient_masking``: is the white-box robustness number trustworthy?

A robust-looking model may only be hiding its gradients (Athalye et al. 2018, "Obfuscated Gradients Give
a False Sense of Security"). Following Carlini et al. 2019 ("On Evaluating Adversarial Robustness") this
check runs four diagnostics and names each that fires, with its numbers:

- ``blackbox_beats_whitebox``: Square, which needs no gradients, breaks samples the white-box attack
  could not;
- ``sweep_not_monotonic`` / ``unbounded_attack_fails``: robust accuracy must fall as ε grows and reach
  about zero when ε covers the whole input range;
- ``attack_not_converged``: five times the steps and two more restarts keep lowering robust accuracy;
- ``zero_or_nan_gradients``: input gradients of the loss are zero or not finite on many samples.

Metric: the number of findings (``max: 0`` by default). The costlier diagnostics use the first
``diagnostic_samples`` samples.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional

from gate.attacks.catalogue import CATALOGUE
from gate.attacks.registry import build_attack
from gate.checks.adversarial import run_attack
from gate.checks.base import CheckContext, CheckKind, deferred_to_first_shard
from gate.checks.evidence import save_curve
from gate.measurement import Measurement
from gate.policy.specs import GradientMaskingSpec
from gate.report.model import Finding


def default_sweep(spec: GradientMaskingSpec, bounds: tuple[float, float], sample_size: int) -> list[float]:
    """0.25x to 4x the budget, then a budget that covers the whole input range (nothing can resist it)."""
    width = bounds[1] - bounds[0]
    unbounded = width if spec.norm == "linf" else width * math.sqrt(sample_size)
    return [*(spec.epsilon * factor for factor in (0.25, 0.5, 1.0, 2.0, 4.0)), unbounded]


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

        base = robust_accuracy(spec.epsilon, spec.steps, spec.restarts, f"{spec.id}: white-box")
        robust, index = base.tensor("robust"), base.tensor("index")
        robust_index = index[robust]
        details["whitebox_robust_accuracy"] = float(robust.float().mean())

        findings += self._blackbox(spec, sub, robust_index, details)
        sweep_findings, sweep_plot = self._sweep(spec, context, robust_accuracy, details)
        findings += sweep_findings
        findings += self._effort(spec, robust_accuracy, robust_index, len(subset), details)
        findings += self._gradients(spec, sub, details)
        message = "; ".join(f.code for f in findings) if findings else "no sign of gradient masking"
        if "blackbox_not_run" in details:
            message += f" (black-box comparison not run: {details['blackbox_not_run']})"
        return Measurement(
            value=float(len(findings)),
            n=len(subset),
            findings=findings,
            details=details,
            artifacts=[sweep_plot],
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
        sample_size = math.prod(context.data.sample_shape)
        epsilons = sorted(spec.sweep or default_sweep(spec, context.policy.input.range, sample_size))
        accuracies = [
            float(
                robust_accuracy(eps, spec.steps, 1, f"{spec.id}: sweep ε={eps:.3g}")
                .tensor("robust")
                .float()
                .mean()
            )
            for eps in epsilons
        ]
        details["sweep"] = {"epsilon": epsilons, "robust_accuracy": accuracies}
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
                    message=f"robust accuracy rose from {before:.3f} at ε={low:.4g} to {after:.3f} at ε={high:.4g}",
                    data={"rises": [list(r) for r in rises]},
                )
            )
        if accuracies[-1] > spec.tolerance:
            findings.append(
                Finding(
                    code="unbounded_attack_fails",
                    message=f"at ε={epsilons[-1]:.4g} robust accuracy is still {accuracies[-1]:.3f}; an attack with "
                    "that budget should reach about zero",
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
        for batch in sub.data.batches(sub.batch_size, sub.device):
            sub.check_deadline()
            x = batch.x.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = functional.cross_entropy(module(x), batch.y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, x)
            norms = grad.flatten(1).norm(dim=1)
            dead += int(((norms == 0) | ~torch.isfinite(norms)).sum())
            total += len(x)
        fraction = dead / max(total, 1)
        details["zero_or_nan_gradient_fraction"] = fraction
        if fraction <= spec.tolerance:
            return []
        return [
            Finding(
                code="zero_or_nan_gradients",
                message=f"the loss gradient is zero or not finite on {dead} of {total} samples",
                data={"samples": dead, "total": total, "fraction": fraction},
            )
        ]
