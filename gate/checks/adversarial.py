"""Check kind ``adversarial``: robust accuracy of the deployed model under a norm-bounded attack.

White-box attacks take gradients from the PyTorch model (the source, or the ONNX model's verified twin);
every adversarial example is then re-scored by the ONNX Runtime session, and robust accuracy is what the
session says. Samples where the two disagree are listed. Score-based ``square`` queries the session only.
Attacks run only on samples the deployed model classifies correctly (Croce & Hein 2020 protocol).

Two ways a gradient attack can stand still and make a model look robust end the check as ``error``
instead: non-finite logits or input gradients (``torch.sign`` maps NaN to 0), and outputs that are
probabilities gate cannot look behind. A final sigmoid or softmax it can undo is attacked through the
logits before it (``gate/model/squashing.py``); the session still decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from gate.attacks.base import Attack, FiniteWatch, Model
from gate.attacks.registry import build_attack
from gate.attacks.threat import perturbation_norm
from gate.checks.base import CheckContext, CheckKind
from gate.checks.evidence import caption, save_example_pairs
from gate.errors import CheckError
from gate.measurement import Measurement
from gate.model.squashing import UNDONE
from gate.policy.checks import AdversarialSpec

BUDGET_TOLERANCE = 1e-5
MAX_LISTED_DISAGREEMENTS = 20


def attack_model(attack: Attack, context: CheckContext) -> Model:
    """Score-based attacks query the deployed session; white-box ones need the differentiable model."""
    if not attack.needs_gradients:
        return context.model.scores
    _refuse_masking_outputs(attack, context)
    module = context.model.require_gradient_model()
    return module.to(context.device).eval()


def _refuse_masking_outputs(attack: Attack, context: CheckContext) -> None:
    """Probabilities that gate cannot trace back to logits saturate a gradient attack: fail closed."""
    if context.model.output_squashing in UNDONE or not context.outputs_are_probabilities():
        return
    raise CheckError(
        f"{attack.name} needs logits, but every output of the deployed model lies in [0, 1] (probabilities) "
        "and its graph does not end in a Sigmoid or Softmax gate can look behind; a gradient attack on "
        "saturated probabilities overstates robustness. Export the model with its logits (a final Sigmoid "
        "or Softmax is fine), or use the score-based square attack"
    )


@dataclass
class AttackRun:
    """Per-sample results of one attack over the evaluation data, as the ONNX session scores them."""

    index: list[torch.Tensor] = field(default_factory=list)
    robust: list[torch.Tensor] = field(default_factory=list)
    clean_correct: list[torch.Tensor] = field(default_factory=list)
    distance: list[torch.Tensor] = field(default_factory=list)
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    disagreement_count: int = 0
    examples: list[tuple[torch.Tensor, torch.Tensor, int, int]] = field(default_factory=list)

    def tensor(self, name: str) -> torch.Tensor:
        return torch.cat(getattr(self, name)).cpu()

    def snapshot(self, position: int) -> dict[str, Any]:
        """The per-sample results of the batch recorded at ``position``, as plain JSON for the resume state."""
        return {
            "index": self.index[position].tolist(),
            "robust": self.robust[position].tolist(),
            "clean_correct": self.clean_correct[position].tolist(),
            "distance": self.distance[position].tolist(),
        }

    def restore(self, saved: dict[str, Any]) -> None:
        """Append a batch finished by an interrupted run."""
        self.index.append(torch.tensor(saved["index"], dtype=torch.int64))
        self.robust.append(torch.tensor(saved["robust"], dtype=torch.bool))
        self.clean_correct.append(torch.tensor(saved["clean_correct"], dtype=torch.bool))
        self.distance.append(torch.tensor(saved["distance"], dtype=torch.float32))


def run_attack(
    attack: Attack,
    context: CheckContext,
    *,
    label: str,
    keep_examples: int = 0,
    only: torch.Tensor | None = None,
) -> AttackRun:
    """Attack every selected sample (or those whose dataset index is in ``only``) batch by batch."""
    model = attack_model(attack, context)
    bounds = attack.bounds
    result = AttackRun()
    total = len(context.data) if only is None else len(only)
    with context.progress.task(label, total) as progress:
        _, _, clean_predictions = context.clean_predictions()  # one session pass per run, shared by checks
        position = 0
        for batch in context.data.batches(context.batch_size, context.device):
            context.check_deadline()
            x, y, index = batch.x, batch.y, batch.index
            predictions = clean_predictions[position : position + len(batch)].to(x.device)
            position += len(batch)
            if only is not None:
                keep = torch.isin(index, only.to(index.device))
                if not bool(keep.any()):
                    continue
                x, y, index, predictions = x[keep], y[keep], index[keep], predictions[keep]
            batch_key = f"{label}@{int(index[0])}+{len(index)}"
            saved = context.finished_batch(batch_key)
            if saved is not None:
                result.restore(saved)
                progress.advance(len(x))
                continue
            recorded = len(result.index)
            clean_correct = predictions == y
            x_adv = x.clone()
            attacked = clean_correct.nonzero().squeeze(1)
            outcome = None
            if len(attacked):
                watch = FiniteWatch(model, x.device)
                outcome = attack.perturb(watch, x[attacked], y[attacked], index=index[attacked])
                _check_finite(attack, watch, index[attacked])
                x_adv[attacked] = outcome.x_adv
                _check_budget(attack, x, x_adv, bounds)
            adversarial_prediction = context.model.scores(x_adv).argmax(1)  # the deployed model decides
            if outcome is not None:
                deployed_correct = adversarial_prediction[attacked] == y[attacked]
                _record_disagreements(
                    result, index[attacked], outcome.robust, deployed_correct, context, x_adv[attacked]
                )
            robust = clean_correct & (adversarial_prediction == y)
            broken = clean_correct & ~robust
            result.index.append(index)
            result.robust.append(robust)
            result.clean_correct.append(clean_correct)
            result.distance.append(perturbation_norm(x[broken], x_adv[broken], attack.norm))
            for i in broken.nonzero().squeeze(1).tolist()[: max(0, keep_examples - len(result.examples))]:
                result.examples.append(
                    (x[i].cpu(), x_adv[i].cpu(), int(y[i]), int(adversarial_prediction[i]))
                )
            context.record_batch(batch_key, result.snapshot(recorded))
            progress.advance(len(x))
    if not result.index:
        raise CheckError("the evaluation data selected no samples to attack")
    return result


def _check_finite(attack: Attack, watch: FiniteWatch, index: torch.Tensor) -> None:
    """Read the attack's finite flag once per batch: a NaN gradient would count as robustness."""
    if bool(watch.finite):
        return
    source = "the ONNX Runtime session" if not attack.needs_gradients else "the gradient model"
    raise CheckError(
        f"{attack.name} met non-finite values (NaN or inf) in {source}'s logits or input gradients, on the "
        f"batch of {len(index)} attacked samples starting at sample {int(index[0])}; an attack cannot move "
        "on them (the sign of a NaN is 0), so robust accuracy would be overstated; model_sanity's "
        "zero_or_nan_gradients counts the samples (look for sqrt, log or a division at 0 in the model)"
    )


def _check_budget(attack: Attack, x: torch.Tensor, x_adv: torch.Tensor, bounds: tuple[float, float]) -> None:
    """An example outside its budget would make the number meaningless: fail closed, loudly."""
    distance = perturbation_norm(x, x_adv, attack.norm)
    low, high = bounds
    if bool((distance > attack.eps * (1 + BUDGET_TOLERANCE) + BUDGET_TOLERANCE).any()):
        raise CheckError(
            f"{attack.name} produced a perturbation of size {float(distance.max()):.6g} > eps {attack.eps}"
        )
    if bool((x_adv < low - BUDGET_TOLERANCE).any() or (x_adv > high + BUDGET_TOLERANCE).any()):
        raise CheckError(f"{attack.name} left the input range [{low}, {high}]")


def _record_disagreements(
    result: AttackRun,
    index: torch.Tensor,
    torch_robust: torch.Tensor,
    deployed_correct: torch.Tensor,
    context: CheckContext,
    x_adv: torch.Tensor,
) -> None:
    """Where the gradient model and the ONNX session judge an adversarial example differently."""
    differs = (torch_robust != deployed_correct).nonzero().squeeze(1)
    result.disagreement_count += len(differs)
    for i in differs.tolist()[: max(0, MAX_LISTED_DISAGREEMENTS - len(result.disagreements))]:
        result.disagreements.append(
            {
                "index": int(index[i]),
                "pytorch_says_robust": bool(torch_robust[i]),
                "onnx_says_robust": bool(deployed_correct[i]),
            }
        )


class AdversarialCheck(CheckKind[AdversarialSpec]):
    spec_type = AdversarialSpec

    def run(self, spec: AdversarialSpec, context: CheckContext) -> Measurement:
        attack = build_attack(
            spec.attack, norm=spec.norm, epsilon=spec.epsilon, bounds=context.policy.input.range, seed=context.seed,
            steps=spec.steps, restarts=spec.restarts, step_size=spec.step_size, queries=spec.queries,
            targeted=spec.targeted, num_classes=context.model.num_classes,
        )  # fmt: skip
        run = run_attack(attack, context, label=f"{spec.id}: {spec.attack}", keep_examples=spec.examples)
        robust, clean_correct, distance = (
            run.tensor("robust"),
            run.tensor("clean_correct"),
            run.tensor("distance"),
        )
        attacked = int(clean_correct.sum())
        broken = attacked - int(robust.sum())
        details: dict[str, Any] = {
            "attack": repr(attack),
            "norm": spec.norm,
            "epsilon": spec.epsilon,
            "clean_accuracy": float(clean_correct.float().mean()),
            "attacked_samples": attacked,
            "attack_success_rate": broken / attacked if attacked else 0.0,
            "gradients_from": context.model.source_kind if attack.needs_gradients else "none (score-based)",
            "gradients_of": context.model.logits_from if attack.needs_gradients else "none (score-based)",
            "pytorch_onnx_disagreements": run.disagreement_count,
            "disagreeing_samples": run.disagreements,
        }
        if len(distance):
            details["perturbation_mean"] = float(distance.mean())
            details["perturbation_median"] = float(distance.median())
        artifacts = []
        if run.examples:
            names = context.model.class_names
            originals = torch.stack([example[0] for example in run.examples])
            adversarial = torch.stack([example[1] for example in run.examples])
            captions = [
                (f"clean: {caption(label, names)}", f"adversarial: {caption(prediction, names)}")
                for _, _, label, prediction in run.examples
            ]
            path = context.artifact_path(spec.id, "examples.png")
            artifacts.append(
                save_example_pairs(path, originals, adversarial, captions, context.policy.input.range)
            )
        message = f"{broken} of {attacked} correctly classified samples broken by {spec.attack} at ε={spec.epsilon:.4g} ({spec.norm})"
        if run.disagreement_count:
            message += f"; PyTorch and ONNX Runtime disagree on {run.disagreement_count} adversarial examples"
        return Measurement.proportion(robust, details=details, artifacts=artifacts, message=message)
