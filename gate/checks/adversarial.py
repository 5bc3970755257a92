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
from gate.data.evaldata import Batch
from gate.errors import CheckError
from gate.measurement import Measurement
from gate.model.squashing import UNDONE
from gate.policy.specs import AdversarialSpec

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
    """Per-sample results of one attack over the evaluation data, as the ONNX session scores them.

    ``columns``: ``index``, ``robust``, ``clean_correct``, ``distance`` (the perturbation's size where the
    attack broke the sample, else 0), ``disagrees`` (the gradient model and the session judge the
    adversarial example differently) and ``pytorch_robust`` (the gradient model's judgement).
    """

    columns: dict[str, torch.Tensor]
    examples: list[tuple[torch.Tensor, torch.Tensor, int, int]] = field(default_factory=list)

    def tensor(self, name: str) -> torch.Tensor:
        return self.columns[name]

    @property
    def broken_distances(self) -> torch.Tensor:
        """Perturbation sizes of the samples the attack broke, in data order."""
        broken = self.columns["clean_correct"] & ~self.columns["robust"]
        return self.columns["distance"][broken]

    @property
    def disagreement_count(self) -> int:
        return int(self.columns["disagrees"].sum())

    @property
    def disagreements(self) -> list[dict[str, Any]]:
        """The first samples on which PyTorch and ONNX Runtime judge the adversarial example differently."""
        differs = self.columns["disagrees"].nonzero().squeeze(1)[:MAX_LISTED_DISAGREEMENTS]
        return [
            {
                "index": int(self.columns["index"][i]),
                "pytorch_says_robust": bool(self.columns["pytorch_robust"][i]),
                "onnx_says_robust": not bool(self.columns["pytorch_robust"][i]),
            }
            for i in differs.tolist()
        ]


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
    examples: list[tuple[torch.Tensor, torch.Tensor, int, int]] = []
    _, _, clean_predictions = context.clean_predictions()  # one session pass per run, shared by checks

    def attack_batch(batch: Batch, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        x, y, index = batch.x, batch.y, batch.index
        predictions = clean_predictions[rows].to(x.device)
        clean_correct = context.task.correct(predictions, y)
        x_adv = x.clone()
        attacked = clean_correct.nonzero().squeeze(1)
        pytorch_robust = torch.zeros_like(clean_correct)
        outcome = None
        if len(attacked):
            watch = FiniteWatch(model, x.device)
            outcome = attack.perturb(watch, x[attacked], y[attacked], index=index[attacked])
            _check_finite(attack, watch, index[attacked])
            x_adv[attacked] = outcome.x_adv
            _check_budget(attack, x, x_adv, bounds)
        adversarial_prediction = context.task.predict(
            context.model.scores(x_adv)
        )  # the deployed model decides
        deployed_correct = context.task.correct(adversarial_prediction, y)
        disagrees = torch.zeros_like(clean_correct)
        if outcome is not None:
            pytorch_robust[attacked] = outcome.robust
            disagrees[attacked] = outcome.robust != deployed_correct[attacked]
        robust = clean_correct & deployed_correct
        broken = clean_correct & ~robust
        distance = torch.zeros(len(x), dtype=torch.float32, device=x.device)
        distance[broken] = perturbation_norm(x[broken], x_adv[broken], attack.norm).to(torch.float32)
        for i in broken.nonzero().squeeze(1).tolist()[: max(0, keep_examples - len(examples))]:
            examples.append((x[i].cpu(), x_adv[i].cpu(), int(y[i]), int(adversarial_prediction[i])))
        return {
            "index": index,
            "robust": robust,
            "clean_correct": clean_correct,
            "distance": distance,
            "disagrees": disagrees,
            "pytorch_robust": pytorch_robust,
        }

    columns = context.per_sample(label, attack_batch, only=only)
    if not columns:
        raise CheckError("the evaluation data selected no samples to attack")
    return AttackRun(columns, examples)


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
            run.broken_distances,
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
