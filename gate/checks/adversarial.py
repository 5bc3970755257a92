"""Check kind ``adversarial``: robust accuracy of the deployed model under a norm-bounded attack.

White-box attacks take gradients from the PyTorch model (the source, or the ONNX model's verified twin);
every adversarial example is then re-scored by the ONNX Runtime session, and robust accuracy is what the
session says. Samples where the two disagree are listed. Score-based ``square`` queries the session only.
Attacks run only on samples the deployed model classifies correctly (Croce & Hein 2020 protocol).

On tabular data every adversarial example is also checked against the feature space (ranges, types,
immutability, one-hot groups, constraints; gate/attacks/feature_space.py) before it counts: an infeasible
example leaves its sample robust, and the report gives the feasibility rate. The constrained attacks
(``cpgd``, ``constrained-search``, ``constrained``) search that space themselves, with ε in standardised
units of each feature.

Two ways a gradient attack can stand still and make a model look robust end the check as ``error``
instead: non-finite logits or input gradients (``torch.sign`` maps NaN to 0), and outputs that are
probabilities gate cannot look behind. A final sigmoid or softmax it can undo is attacked through the
logits before it (``gate/model/squashing.py``); the session still decides.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from gate.attacks.base import Attack, FiniteWatch, Model
from gate.attacks.catalogue import attack_info
from gate.attacks.eot import correct_in_every_draw
from gate.attacks.feature_attack import AttackModels, FeatureAttack
from gate.attacks.feature_space import REASON_TEXT, FeatureThreat, reason_names
from gate.attacks.registry import build_attack
from gate.attacks.threat import perturbation_norm
from gate.checks.adaptive import Plan
from gate.checks.adaptive import plan as plan_escalation
from gate.checks.base import CheckContext, CheckKind
from gate.checks.evidence import (
    feature_examples,
    pair_caption,
    predicted_confidence,
    save_epsilon_curve,
    save_example_pairs,
)
from gate.data.evaldata import Batch
from gate.errors import CheckError
from gate.measurement import Measurement
from gate.model.squashing import UNDONE
from gate.policy.specs import AdversarialSpec, AttackOptions

BUDGET_TOLERANCE = 1e-5
MAX_LISTED_DISAGREEMENTS = 20


def attack_model(attack: Attack, context: CheckContext) -> Model:
    """Score-based attacks query the deployed session; white-box ones need the differentiable model."""
    if not attack.needs_gradients:
        return context.model.scores
    _refuse_masking_outputs(attack, context)
    module = context.model.require_gradient_model()
    return module.to(context.device).eval()


def feature_attack_models(attack: FeatureAttack, context: CheckContext) -> tuple[AttackModels, str | None]:
    """What a tabular attack may query, and why it gets no gradients (None when it does).

    The ensemble takes gradients where the model has them and does without where it has none (a tree
    ensemble); an attack that needs them fails closed with the reason.
    """
    model = context.model
    reason = model.gradient_unavailable_reason if model.gradient_model is None else None
    if reason is None and _masking_outputs(context):
        reason = _MASKING_OUTPUTS
    if attack.needs_gradients and reason is not None:
        raise CheckError(
            f"{attack.name} needs input gradients: {reason}; the black-box constrained-search (or the "
            "constrained ensemble, which falls back to it) needs none"
        )
    gradient = None
    if reason is None:
        gradient = model.require_gradient_model().to(context.device).eval()
    models = AttackModels(
        scores=model.scores,
        gradient=gradient,
        no_gradient_reason=reason,
        scores_are_probabilities=bool(getattr(model, "scores_are_probabilities", False)),
    )
    return models, reason


_MASKING_OUTPUTS = (
    "every output of the deployed model lies in [0, 1] (probabilities) and its graph does not end in a "
    "Sigmoid or Softmax gate can look behind; a gradient attack on saturated probabilities overstates "
    "robustness"
)


def _masking_outputs(context: CheckContext) -> bool:
    """Probabilities that gate cannot trace back to logits (or take the logarithm of) saturate gradients."""
    model = context.model
    recovered = model.output_squashing in UNDONE or bool(getattr(model, "logits_recovered", False))
    return not recovered and context.outputs_are_probabilities()


def _refuse_masking_outputs(attack: Attack, context: CheckContext) -> None:
    """Probabilities that gate cannot trace back to logits saturate a gradient attack: fail closed."""
    if not _masking_outputs(context):
        return
    raise CheckError(
        f"{attack.name} needs logits, but {_MASKING_OUTPUTS}. Export the model with its logits (a final "
        "Sigmoid or Softmax is fine), or use a score-based attack (square; constrained-search on tabular data)"
    )


@dataclass
class AttackRun:
    """Per-sample results of one attack over the evaluation data, as the ONNX session scores them.

    ``columns``: ``index``, ``robust``, ``clean_correct``, ``distance`` (the perturbation's size where the
    attack broke the sample, else 0), ``disagrees`` (the gradient model and the session judge the
    adversarial example differently), ``pytorch_robust`` (the gradient model's judgement) and, on
    tabular data, ``infeasible`` (the session misclassified the example but it breaks the feature space:
    it does not count) with ``infeasible_reasons`` (bits of ``feature_space.REASONS``) and ``rejected``
    (candidates a constrained attack found misclassified but infeasible, and dropped itself).
    """

    columns: dict[str, torch.Tensor]
    examples: list[tuple[torch.Tensor, torch.Tensor, int, int]] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)

    def tensor(self, name: str) -> torch.Tensor:
        return self.columns[name]

    @property
    def robust_index(self) -> torch.Tensor:
        """Dataset indices of the samples still robust."""
        return self.columns["index"][self.columns["robust"]]

    def absorb(self, other: AttackRun, keep_examples: int = 0) -> int:
        """Fold in a further attack on some of these samples (an escalation, on the still-robust ones): a
        sample is robust only if every attack left it so. Returns how many it newly broke."""
        position = {int(index): row for row, index in enumerate(self.columns["index"].tolist())}
        rows = torch.tensor([position[int(i)] for i in other.columns["index"].tolist()], dtype=torch.int64)
        newly = self.columns["robust"][rows] & ~other.columns["robust"]
        broken_rows = rows[newly]
        self.columns["robust"][broken_rows] = False
        self.columns["distance"][broken_rows] = other.columns["distance"][newly]
        room = max(0, keep_examples - len(self.examples))
        self.examples.extend(other.examples[:room])
        return int(newly.sum())

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

    def feasibility(self) -> dict[str, Any] | None:
        """The feasibility of the adversarial examples, for the report (None off tabular data)."""
        if "infeasible" not in self.columns:
            return None
        infeasible = self.columns["infeasible"]
        rejected = self.columns["rejected"]
        broken = self.columns["clean_correct"] & ~self.columns["robust"]
        candidates = int(broken.sum() + infeasible.sum() + rejected.sum())
        bits = 0
        for value in self.columns["infeasible_reasons"][infeasible | rejected].tolist():
            bits |= int(value)
        return {
            "adversarial_candidates": candidates,
            "feasible_examples": int(broken.sum()),
            "infeasible_examples": int(infeasible.sum() + rejected.sum()),
            "feasibility_rate": (int(broken.sum()) / candidates) if candidates else 1.0,
            "infeasible_reasons": [REASON_TEXT[name] for name in reason_names(bits)],
        }


@dataclass
class _Perturbed:
    """One batch after the attack: the examples, the attacker's own verdict on the attacked rows, and the
    candidates a feature-space attack dropped as infeasible (with their reasons)."""

    x_adv: torch.Tensor
    attacker_robust: torch.Tensor | None
    rejected: torch.Tensor
    reasons: torch.Tensor


def _perturb(
    attack: Attack | FeatureAttack,
    target: Model | AttackModels,
    batch: Batch,
    attacked: torch.Tensor,
    on_call: Callable[[], None] | None = None,
) -> _Perturbed:
    """Run ``attack`` on the ``attacked`` rows of ``batch``, watching the gradients it takes for NaN;
    ``on_call`` is told of every model call (the progress bar's pulse)."""
    x, y, index = batch.x, batch.y, batch.index
    x_adv = x.clone()
    rejected = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    reasons = torch.zeros(len(x), dtype=torch.int64, device=x.device)
    if not len(attacked):
        return _Perturbed(x_adv, None, rejected, reasons)
    if isinstance(attack, FeatureAttack) and isinstance(target, AttackModels):
        watch = None if target.gradient is None else FiniteWatch(target.gradient, x.device, on_call)
        watched = target if watch is None else dataclasses.replace(target, gradient=watch)
        outcome = attack.perturb(watched, x[attacked], y[attacked], index=index[attacked])
        if outcome.rejected is not None and outcome.rejected_reasons is not None:
            rejected[attacked], reasons[attacked] = outcome.rejected, outcome.rejected_reasons
    elif isinstance(attack, Attack) and not isinstance(target, AttackModels):
        watch = FiniteWatch(target, x.device, on_call)
        outcome = attack.perturb(watch, x[attacked], y[attacked], index=index[attacked])
    else:
        raise TypeError(f"{attack.name} was given a model it cannot query")
    if watch is not None:
        check_finite(attack, watch, index[attacked])
    x_adv[attacked] = outcome.x_adv
    if isinstance(attack, Attack):
        check_budget(attack, x, x_adv, attack.bounds)
    return _Perturbed(x_adv, outcome.robust, rejected, reasons)


def run_attack(
    attack: Attack | FeatureAttack,
    context: CheckContext,
    *,
    label: str,
    keep_examples: int = 0,
    only: torch.Tensor | None = None,
    model: Model | None = None,
    draws: int = 1,
) -> AttackRun:
    """Attack every selected sample (or those whose dataset index is in ``only``) batch by batch.

    ``model``: the differentiable model a white-box attack takes gradients from, instead of the model
    under test's (an escalation's straight-through twin or expectation over draws). ``draws``: passes of
    the deployed model each adversarial example is judged on; more than one for a randomised model, where
    a sample is robust only if every pass classifies it correctly (``gate/attacks/eot.py``).
    """
    target: Model | AttackModels
    stages: list[str] = []
    if isinstance(attack, FeatureAttack):
        target, _ = feature_attack_models(attack, context)
        stages = attack.plan(target)
    elif model is not None and attack.needs_gradients:
        target = model
    else:
        target = attack_model(attack, context)
    examples: list[tuple[torch.Tensor, torch.Tensor, int, int]] = []
    space = context.features
    _, _, clean_predictions = context.clean_predictions()  # one session pass per run, shared by checks

    def attack_batch(batch: Batch, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        x, y = batch.x, batch.y
        clean_correct = context.task.correct(clean_predictions[rows].to(x.device), y)
        attacked = clean_correct.nonzero().squeeze(1)
        perturbed = _perturb(attack, target, batch, attacked, context.progress.pulse)
        x_adv = perturbed.x_adv
        adversarial_prediction = context.task.predict(
            context.model.scores(x_adv)
        )  # the deployed model decides
        deployed_correct = context.task.correct(adversarial_prediction, y)
        if draws > 1:
            deployed_correct = deployed_correct & correct_in_every_draw(
                lambda: context.task.correct(context.task.predict(context.model.scores(x_adv)), y), draws - 1
            )
        columns: dict[str, torch.Tensor] = {}
        if space is not None:
            # An example outside the feature space is no example: its sample stays robust.
            if isinstance(attack, FeatureAttack):
                _, bits = attack.threat.feasible(x_adv, x)
            else:
                bits = space.violations(x_adv, x)
            infeasible = clean_correct & ~deployed_correct & (bits != 0)
            deployed_correct = deployed_correct | infeasible
            reasons = torch.where(infeasible, bits, perturbed.reasons)
            columns.update(infeasible=infeasible, infeasible_reasons=reasons, rejected=perturbed.rejected)
        pytorch_robust = torch.zeros_like(clean_correct)
        disagrees = torch.zeros_like(clean_correct)
        if perturbed.attacker_robust is not None:
            pytorch_robust[attacked] = perturbed.attacker_robust
            disagrees[attacked] = perturbed.attacker_robust != deployed_correct[attacked]
        robust = clean_correct & deployed_correct
        broken = clean_correct & ~robust
        distance = torch.zeros(len(x), dtype=torch.float32, device=x.device)
        if isinstance(attack, FeatureAttack):
            distance[broken] = attack.threat.distance(x[broken], x_adv[broken]).to(torch.float32)
        else:
            distance[broken] = perturbation_norm(x[broken], x_adv[broken], attack.norm).to(torch.float32)
        for i in broken.nonzero().squeeze(1).tolist()[: max(0, keep_examples - len(examples))]:
            examples.append((x[i].cpu(), x_adv[i].cpu(), int(y[i]), int(adversarial_prediction[i])))
        return {
            "index": batch.index,
            "robust": robust,
            "clean_correct": clean_correct,
            "distance": distance,
            "disagrees": disagrees,
            "pytorch_robust": pytorch_robust,
            **columns,
        }

    columns = context.per_sample(label, attack_batch, only=only)
    if not columns:
        raise CheckError("the evaluation data selected no samples to attack")
    return AttackRun(columns, examples, stages)


def check_finite(attack: Attack | FeatureAttack, watch: FiniteWatch, index: torch.Tensor) -> None:
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


def check_budget(attack: Attack, x: torch.Tensor, x_adv: torch.Tensor, bounds: tuple[float, float]) -> None:
    """An example outside its budget would make the number meaningless: fail closed, loudly."""
    distance = perturbation_norm(x, x_adv, attack.norm)
    low, high = bounds
    if bool((distance > attack.eps * (1 + BUDGET_TOLERANCE) + BUDGET_TOLERANCE).any()):
        raise CheckError(
            f"{attack.name} produced a perturbation of size {float(distance.max()):.6g} > eps {attack.eps}"
        )
    if bool((x_adv < low - BUDGET_TOLERANCE).any() or (x_adv > high + BUDGET_TOLERANCE).any()):
        raise CheckError(f"{attack.name} left the input range [{low}, {high}]")


def spec_attack(
    spec: AttackOptions, context: CheckContext, *, num_classes: int, threat: FeatureThreat | None = None
) -> Attack | FeatureAttack:
    """The attack a check's policy fields describe, at the policy's input range and seed."""
    return build_attack(
        spec.attack, norm=spec.norm, epsilon=spec.epsilon, bounds=context.policy.input.range, seed=context.seed,
        steps=spec.steps, restarts=spec.restarts, step_size=spec.step_size, queries=spec.queries,
        targeted=spec.targeted, num_classes=num_classes, threat=threat,
    )  # fmt: skip


def attack_and_escalate(
    spec: AdversarialSpec,
    context: CheckContext,
    *,
    label: str,
    keep_examples: int = 0,
    only: torch.Tensor | None = None,
) -> tuple[Attack | FeatureAttack, AttackRun, Plan | None, dict[str, Any] | None]:
    """The policy's attack on the selected samples (or those in ``only``), then, under ``adaptive:
    auto``, each escalation the diagnosis calls for on the samples still robust (gate/checks/adaptive.py).

    Returns the attack, the per-sample run (every escalation folded in), the plan and the report's
    ``adaptive`` record (None for ``adaptive: off`` and feature-space attacks).
    """
    threat = None
    if attack_info(spec.attack).feature_space:
        if context.features is None:
            raise CheckError(f"{spec.attack} attacks feature vectors [N, F]; this data has no features")
        threat = FeatureThreat(context.features, spec.norm, spec.epsilon)
    attack = spec_attack(spec, context, num_classes=context.model.num_classes, threat=threat)
    adaptive = None
    if spec.adaptive == "auto" and isinstance(attack, Attack):
        adaptive = plan_escalation(spec, attack, context)
    draws = adaptive.draws if adaptive is not None else 1
    run = run_attack(attack, context, label=label, keep_examples=keep_examples, only=only, draws=draws)
    escalated = _escalate(spec, context, run, adaptive) if adaptive is not None else None
    return attack, run, adaptive, escalated


class AdversarialCheck(CheckKind[AdversarialSpec]):
    spec_type = AdversarialSpec

    def run(self, spec: AdversarialSpec, context: CheckContext) -> Measurement:
        info = attack_info(spec.attack)
        attack, run, adaptive, escalated = attack_and_escalate(
            spec, context, label=f"{spec.id}: {spec.attack}", keep_examples=spec.examples
        )
        curve = None
        if spec.epsilon_curve and isinstance(attack, Attack):
            curve = _epsilon_curve(spec, context, run)
        robust, clean_correct, distance = (
            run.tensor("robust"),
            run.tensor("clean_correct"),
            run.broken_distances,
        )
        attacked = int(clean_correct.sum())
        broken = attacked - int(robust.sum())
        gradients = attack.needs_gradients or any(stage.startswith("cpgd (") for stage in run.stages)
        details: dict[str, Any] = {
            "attack": repr(attack),
            "norm": spec.norm,
            "epsilon": spec.epsilon,
            "epsilon_units": info.budget_units,
            "clean_accuracy": float(clean_correct.float().mean()),
            "attacked_samples": attacked,
            "attack_success_rate": broken / attacked if attacked else 0.0,
            "gradients_from": context.model.source_kind if gradients else "none (score-based)",
            "gradients_of": context.model.logits_from if gradients else "none (score-based)",
            "pytorch_onnx_disagreements": run.disagreement_count,
            "disagreeing_samples": run.disagreements,
        }
        if run.stages:
            details["attack_stages"] = run.stages
        feasibility = run.feasibility()
        if feasibility is not None and context.features is not None:
            details.update(feasibility)
            details["feature_space"] = context.features.describe()
        if len(distance):
            details["perturbation_mean"] = float(distance.mean())
            details["perturbation_median"] = float(distance.median())
        artifacts = []
        if run.examples and context.features is not None:
            details["examples"] = feature_examples(run.examples, context.features)
        elif run.examples:
            names = context.model.class_names
            originals = torch.stack([example[0] for example in run.examples])
            adversarial = torch.stack([example[1] for example in run.examples])
            predictions = torch.tensor([example[3] for example in run.examples])
            # One more pass over at most `examples` inputs, for the confidence the captions show.
            confidence = predicted_confidence(
                context.model.scores(adversarial.to(context.device)),
                predictions,
                are_probabilities=bool(getattr(context.model, "scores_are_probabilities", False)),
            )
            captions = [
                pair_caption(label, prediction, float(p), names)
                for (_, _, label, prediction), p in zip(run.examples, confidence, strict=True)
            ]
            path = context.artifact_path(spec.id, "examples.png")
            rows = ("clean", "adversarial", "perturbation")
            bounds = context.policy.input.range
            artifacts.append(
                save_example_pairs(path, originals, adversarial, captions, bounds, row_titles=rows)
            )
        message = f"{broken} of {attacked} correctly classified samples broken by {spec.attack if not (escalated and escalated['lowered_by']) else ' and '.join([spec.attack, *escalated['lowered_by']])} at ε={spec.epsilon:.4g} ({spec.norm})"
        if info.feature_space:
            message += " in standardised feature units"
        if run.disagreement_count:
            message += f"; PyTorch and ONNX Runtime disagree on {run.disagreement_count} adversarial examples"
            if adaptive is not None and adaptive.draws > 1:
                message += " (expected of a randomised model: each pass draws anew)"
        if feasibility is not None and feasibility["infeasible_examples"]:
            message += (
                f"; {feasibility['infeasible_examples']} misclassified candidate(s) broke the feature space "
                f"({', '.join(feasibility['infeasible_reasons'])}) and did not count"
            )
        if run.stages and run.stages[0].startswith("cpgd skipped"):
            message += f"; {run.stages[0]}, so the black-box search ran alone"
        if curve is not None:
            details["epsilon_curve"] = curve
            path = context.artifact_path(spec.id, "epsilon-curve.png")
            artifacts.append(
                save_epsilon_curve(
                    path,
                    curve["epsilon"],
                    curve["robust_accuracy"],
                    policy_epsilon=spec.epsilon,
                    threshold=spec.min,
                    title=f"{spec.attack}: robust accuracy against ε ({spec.norm})",
                )
            )
        if adaptive is not None and escalated is not None:
            details["adaptive"] = escalated
            message += _escalation_message(escalated)
        return Measurement.proportion(robust, details=details, artifacts=artifacts, message=message)


def _escalate(spec: AdversarialSpec, context: CheckContext, run: AttackRun, adaptive: Plan) -> dict[str, Any]:
    """Run the plan's escalations on the samples still robust, folding each into ``run``; the report's
    ``adaptive`` record: the diagnosis, each escalation with why, what it broke and its time."""
    attacked = int(run.tensor("clean_correct").sum())
    plain = int(run.tensor("robust").sum())
    steps: list[dict[str, Any]] = []
    for escalation in adaptive.escalations:
        survivors = run.robust_index
        if not len(survivors):
            break
        start = time.perf_counter()
        further = run_attack(
            escalation.attack, context, label=f"{spec.id}: escalation {escalation.name}", only=survivors,
            keep_examples=spec.examples, model=escalation.model, draws=adaptive.draws,
        )  # fmt: skip
        newly = run.absorb(further, keep_examples=spec.examples)
        steps.append(
            {
                "escalation": escalation.name,
                "reason": escalation.reason,
                "attack": repr(escalation.attack),
                "samples_attacked": len(survivors),
                "newly_broken": newly,
                "seconds": round(time.perf_counter() - start, 3),
            }
        )
    n = len(run.tensor("robust"))
    record: dict[str, Any] = {
        "diagnosis": adaptive.diagnosis.describe(),
        "judged_over_draws": adaptive.draws,
        "plain_robust_accuracy": plain / n if n else 0.0,
        "escalations": steps,
        "unavailable": adaptive.unavailable,
        "attacked_samples": attacked,
        "samples": n,
    }
    decisive = [step for step in steps if step["newly_broken"]]
    record["lowered_by"] = [step["escalation"] for step in decisive]
    return record


def _escalation_message(record: dict[str, Any]) -> str:
    """The escalation in the check's message: which attacks lowered the number and why, or why none ran."""
    parts = []
    if record["judged_over_draws"] > 1:
        parts.append(f"randomised outputs: judged over {record['judged_over_draws']} draws")
    for step in record["escalations"]:
        if step["newly_broken"]:
            parts.append(f"{step['escalation']} broke {step['newly_broken']} more ({step['reason']})")
    ran = [step["escalation"] for step in record["escalations"] if not step["newly_broken"]]
    if ran:
        parts.append(f"{', '.join(ran)} broke none")
    parts.extend(f"not run: {text}" for text in record["unavailable"])
    if not parts:
        return ""
    plain = record["plain_robust_accuracy"]
    return f"; adaptive escalation (plain attack: robust accuracy {plain:.3f}): " + "; ".join(parts)


def _epsilon_curve(spec: AdversarialSpec, context: CheckContext, run: AttackRun) -> dict[str, list[float]]:
    """Robust accuracy at ``spec.epsilon_curve`` multiples of ε, for the report's curve (not the verdict).

    Each budget is measured the way ε was, escalation included (a masked model's curve is not the plain
    attack's), but on fewer samples: a smaller ball only on the samples broken at ε (the others count as
    robust there: the attacks could not break them with more room), a larger one only on the samples still
    robust at ε (the broken ones stay broken: the ball contains the smaller one).
    """
    robust, clean_correct = run.tensor("robust"), run.tensor("clean_correct")
    n = len(robust)
    index = run.tensor("index")
    broken_index = index[clean_correct & ~robust]
    low, high = context.policy.input.range
    points: dict[float, float] = {0.0: int(clean_correct.sum()) / n, spec.epsilon: int(robust.sum()) / n}
    for factor in sorted(set(spec.epsilon_curve) - {1.0}):
        epsilon = factor * spec.epsilon
        if spec.norm == "linf":
            epsilon = min(epsilon, high - low)  # a larger L∞ budget is the same budget
        only = broken_index if factor < 1 else run.robust_index
        still_robust = int(robust.sum())
        if len(only):
            step_size = None if spec.step_size is None else spec.step_size * factor
            at = spec.model_copy(update={"epsilon": epsilon, "step_size": step_size})
            _, further, _, _ = attack_and_escalate(
                at, context, label=f"{spec.id}: ε-curve {epsilon:.3g}", only=only
            )
            if factor < 1:
                still_robust += int(further.tensor("robust").sum())
            else:
                still_robust -= int((~further.tensor("robust")).sum())
        points[epsilon] = still_robust / n if n else 0.0
    epsilons = sorted(points)
    return {"epsilon": epsilons, "robust_accuracy": [points[e] for e in epsilons]}
