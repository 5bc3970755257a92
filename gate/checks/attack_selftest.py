"""Check kind ``attack_selftest``: can the policy's attack find an adversarial example known to exist?

The binarization test of Zimmermann et al. 2022 ("Increasing Confidence in Adversarial Robustness
Evaluations"). For each correctly classified sample ``x`` a point ``x'`` is planted inside the ε-ball
(a random direction of length ``PLANTED_RADIUS`` · ε, kept in the input range), with a few "inner" points
closer to ``x``. A linear readout of the model's logits, ``s(v) = w·φ(v) − t``, is fitted so that ``x``
and the inner points score below 0 and ``x'`` above: the binary model ``[0, s(v)]`` (label 0) then has an
adversarial example inside the ball by construction. The attack runs against it, and the metric is the
share of samples on which it finds one (any point with ``s > 0``, not necessarily ``x'``).

The readout sits on the logits of the whole model, so whatever hides gradients in the model (quantised
inputs, saturations) is still in the way: an attack that cannot find the planted examples cannot be
trusted to find real ones. The readout is fitted on the deployed session's logits and the planted points
are verified there (and on the gradient model a white-box attack differentiates); a sample whose logits
do not separate the planted point from ``x`` after ``ATTEMPTS`` draws is invalid, reported and left out
of ``n``. The session judges every attack's result.

Whole-set diagnostic: it runs on the first ``samples`` of the unsharded selection, in shard 1 only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gate.attacks.base import Attack, FiniteWatch, Model
from gate.attacks.catalogue import attack_info
from gate.checks.adaptive import GradientEscalation, escalated_gradient_model
from gate.checks.adversarial import attack_model, check_budget, check_finite, spec_attack
from gate.checks.base import CheckContext, CheckKind, Columns, deferred_to_first_shard
from gate.data.evaldata import Batch
from gate.errors import CheckError
from gate.measurement import Measurement
from gate.policy.specs import SELFTEST_CLASSES, AdversarialSpec, AttackSelftestSpec
from gate.randomness.streams import SampleRandom
from gate.stats import clopper_pearson

EOT_SAMPLES: int = AdversarialSpec.model_fields["eot_samples"].default
"""Draws per gradient for a randomised model: the adversarial check's default."""

PLANTED_RADIUS = 0.9
"""The planted point's distance from ``x``, as a share of ε: inside the ball, but not on its edge."""
INNER_RADIUS = 0.5
"""The largest distance of an inner point from ``x``, as a share of ε."""
INNER_POINTS = 8
ATTEMPTS = 3
"""Draws of a planted point before a sample whose logits cannot separate it is called invalid."""
MAX_LISTED_FAILURES = 10
LOG_FLOOR = 1e-30
_STREAM = 0x5E1F7E57
"""Tells this check's random streams from the attacks' own, which share the seed and sample index."""

VALID, NOT_SEPARABLE, GRADIENT_DISAGREES = 0, 1, 2
INVALID_REASONS = {
    NOT_SEPARABLE: "the deployed model's logits do not separate the planted point from the clean and inner "
    "points (no linear readout makes only the planted point adversarial)",
    GRADIENT_DISAGREES: "the gradient model's logits disagree with the deployed session's on the planted or "
    "the clean point",
}


class BinaryReadout(nn.Module):
    """Two logits ``[0, w·φ(v) − t]`` over a model's features ``φ``: class 1 is the planted adversarial side."""

    def __init__(
        self, features: Callable[[torch.Tensor], torch.Tensor], weight: torch.Tensor, threshold: float
    ):
        super().__init__()
        self.features = features
        self.register_buffer("weight", weight.detach().clone())
        self.threshold = float(threshold)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """``w·φ(x) − t`` per row: positive where the binary model calls ``x`` adversarial."""
        return self.features(x).to(self.weight.dtype) @ self.weight - self.threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.score(x)
        return torch.stack([torch.zeros_like(score), score], dim=1)


@dataclass(frozen=True)
class Plant:
    """A planted point for one sample and the readout that makes it (alone) adversarial."""

    x_planted: torch.Tensor
    weight: torch.Tensor
    threshold: float


def _gradient_target(attack: Attack, context: CheckContext, spec: AttackSelftestSpec) -> Model:
    """The model the attack differentiates, before binarisation: with ``adaptive: auto`` the one the
    adversarial check's escalation would use (the BPDA twin, the expectation over draws), so the self-test
    vouches for the attack as gate runs it on this model; else the plain gradient model."""
    escalation = _escalation(attack, context, spec)
    if escalation is not None and escalation.model is not None:
        return escalation.model
    return attack_model(attack, context)


def _escalation(attack: Attack, context: CheckContext, spec: AttackSelftestSpec) -> GradientEscalation | None:
    if spec.adaptive != "auto" or not attack.needs_gradients:
        return None
    return escalated_gradient_model(context, EOT_SAMPLES)


def session_features(context: CheckContext) -> Callable[[torch.Tensor], torch.Tensor]:
    """The deployed session's outputs as the logits the gradient model returns, up to a per-row shift.

    A readout whose weights sum to zero ignores the shift: the log of a softmax's probabilities is the
    logits minus their log-sum-exp. A sigmoid is undone exactly by its logit (saturated values excepted,
    which the verification catches).
    """
    model = context.model
    squashing = getattr(model, "output_squashing", None)
    probabilities = bool(getattr(model, "scores_are_probabilities", False))

    def features(x: torch.Tensor) -> torch.Tensor:
        scores = model.scores(x)
        if squashing == "sigmoid":
            p = scores.clamp(LOG_FLOOR, 1 - 1e-7)
            return torch.log(p) - torch.log1p(-p)
        if probabilities and squashing != "log_softmax":
            return scores.clamp_min(LOG_FLOOR).log()
        return scores

    return features


def planted_directions(
    rng: SampleRandom, tag: int, count: int, shape: tuple[int, ...], norm: str
) -> torch.Tensor:
    """``count`` directions per sample of unit size in ``norm`` (L∞: vertices of the cube), ``[N, count, *shape]``."""
    if norm == "linf":
        return rng.signs(tag, (count, *shape))
    direction = rng.normal(tag, (count, *shape))
    size = direction.flatten(2).norm(dim=2).clamp_min(1e-12)
    return direction / size.view(*size.shape, *([1] * len(shape)))


def fit_readout(features: torch.Tensor) -> tuple[torch.Tensor, float, bool]:
    """Weights and threshold that put rows ``0..-2`` (clean and inner) below 0 and the last row above.

    ``w`` is the planted point's features minus the mean of the others, centred (so that it sums to zero);
    the threshold lies halfway between the highest other score and the planted one. Returns whether the
    planted row scores strictly above every other, with a margin float32 can hold.
    """
    features = features.to(torch.float64)
    others, planted = features[:-1], features[-1]
    weight = planted - others.mean(dim=0)
    weight = weight - weight.mean()
    scores = features @ weight
    highest_other, planted_score = float(scores[:-1].max()), float(scores[-1])
    threshold = (highest_other + planted_score) / 2
    scale = max(float(scores.abs().max()), 1e-30)
    separable = planted_score - highest_other > 1e-4 * scale
    return weight, threshold, separable


class AttackSelftestCheck(CheckKind[AttackSelftestSpec]):
    spec_type = AttackSelftestSpec

    def run(self, spec: AttackSelftestSpec, context: CheckContext) -> Measurement:
        sub = context.diagnostic_context(spec.samples)
        if sub is None:
            return deferred_to_first_shard(context)
        attack = spec_attack(spec, context, num_classes=SELFTEST_CLASSES)
        if not isinstance(attack, Attack):
            raise CheckError(f"{spec.attack} searches a feature space; the self-test runs in the ε-ball")
        columns = _SelfTest(spec, sub, attack).columns()
        return _measurement(spec, sub, attack, columns)


class _SelfTest:
    """Plants, verifies and attacks one sample at a time: each sample has its own binary model."""

    def __init__(self, spec: AttackSelftestSpec, context: CheckContext, attack: Attack) -> None:
        self.spec, self.context, self.attack = spec, context, attack
        self.session = session_features(context)
        self.gradient = _gradient_target(attack, context, spec) if attack.needs_gradients else None

    def columns(self) -> Columns:
        context = self.context
        _, _, clean_predictions = context.clean_predictions()

        def test_batch(batch: Batch, rows: torch.Tensor) -> Columns:
            correct = context.task.correct(clean_predictions[rows].to(batch.x.device), batch.y)
            reason = torch.zeros(len(batch), dtype=torch.int64)
            found = torch.zeros(len(batch), dtype=torch.bool)
            for row in correct.nonzero().squeeze(1).tolist():
                context.check_deadline()  # one attack per sample: a batch can take long
                reason[row], found[row] = self._one(batch.x[row : row + 1], batch.index[row : row + 1])
            return {"index": batch.index, "clean_correct": correct, "invalid_reason": reason, "found": found}

        columns = context.per_sample(f"{self.spec.id}: self-test of {self.spec.attack}", test_batch)
        if not columns:
            raise CheckError("the evaluation data selected no samples to plant adversarial examples in")
        return columns

    def _one(self, x: torch.Tensor, index: torch.Tensor) -> tuple[int, bool]:
        """(invalid reason or VALID, whether the attack found a planted adversarial example)."""
        reason = NOT_SEPARABLE
        for attempt in range(ATTEMPTS):
            plant, reason = self._plant(x, index, attempt)
            if plant is not None:
                return VALID, self._attack(x, index, plant)
        return reason, False

    def _plant(self, x: torch.Tensor, index: torch.Tensor, attempt: int) -> tuple[Plant | None, int]:
        spec, (low, high) = self.spec, self.context.policy.input.range
        rng = SampleRandom(index, (self.context.seed, _STREAM, attempt))
        shape = tuple(x.shape[1:])
        planted = x + PLANTED_RADIUS * spec.epsilon * planted_directions(rng, 10, 1, shape, spec.norm)[:, 0]
        radii = INNER_RADIUS * spec.epsilon * rng.uniform(40, (INNER_POINTS,))
        inner = (
            x
            + radii.view(INNER_POINTS, *([1] * len(shape)))
            * planted_directions(rng, 30, INNER_POINTS, shape, spec.norm)[0]
        )
        # Clamping to the input range moves a point towards x, so it stays inside its ball.
        points = torch.cat([x, inner, planted]).clamp(low, high)
        weight, threshold, separable = fit_readout(self.session(points))
        if not separable:
            return None, NOT_SEPARABLE
        plant = Plant(points[-1:], weight.to(torch.float32), threshold)
        if self.gradient is not None:
            readout = BinaryReadout(self.gradient, plant.weight.to(x.device), threshold)
            with torch.no_grad():
                scores = readout.score(torch.cat([x, plant.x_planted]))
            if not (float(scores[0]) < 0 < float(scores[1])):
                return None, GRADIENT_DISAGREES
        return plant, VALID

    def _attack(self, x: torch.Tensor, index: torch.Tensor, plant: Plant) -> bool:
        """Whether the deployed session's binary model calls the attack's result adversarial."""
        weight = plant.weight.to(x.device)
        features = self.gradient if self.gradient is not None else self.session
        watch = FiniteWatch(BinaryReadout(features, weight, plant.threshold), x.device)
        label = torch.zeros(1, dtype=torch.int64, device=x.device)
        outcome = self.attack.perturb(watch, x, label, index=index)
        check_finite(self.attack, watch, index)
        check_budget(self.attack, x, outcome.x_adv, self.attack.bounds)
        judge = BinaryReadout(self.session, weight, plant.threshold)
        with torch.no_grad():
            return bool(judge.score(outcome.x_adv)[0] > 0)


def _measurement(
    spec: AttackSelftestSpec, context: CheckContext, attack: Attack, columns: Columns
) -> Measurement:
    clean_correct, reason, found = columns["clean_correct"], columns["invalid_reason"], columns["found"]
    valid = clean_correct & (reason == VALID)
    invalid = clean_correct & (reason != VALID)
    index = columns["index"]
    invalid_reasons = {
        INVALID_REASONS[code]: int((reason[invalid] == code).sum())
        for code in INVALID_REASONS
        if bool((reason[invalid] == code).any())
    }
    missed = index[valid & ~found]
    details: dict[str, Any] = {
        "attack": repr(attack),
        "norm": spec.norm,
        "epsilon": spec.epsilon,
        "epsilon_units": attack_info(spec.attack).budget_units,
        "adaptive": spec.adaptive,
        "gradients_from": context.model.source_kind if attack.needs_gradients else "none (score-based)",
        "samples_tried": len(index),
        "misclassified": int((~clean_correct).sum()),
        "valid": int(valid.sum()),
        "invalid": int(invalid.sum()),
        "invalid_reasons": invalid_reasons,
        "invalid_samples": index[invalid][:MAX_LISTED_FAILURES].tolist(),
        "found": int(found[valid].sum()),
        "missed_samples": missed[:MAX_LISTED_FAILURES].tolist(),
        "planted_radius": PLANTED_RADIUS * spec.epsilon,
    }
    escalation = _escalation(attack, context, spec)
    if escalation is not None and escalation.model is not None:
        details["gradient_escalation"] = {"name": escalation.name, "reason": escalation.reason}
    if not bool(valid.any()):
        raise CheckError(
            f"none of the {int(clean_correct.sum())} correctly classified samples (of {len(index)} tried) could "
            f"be given a planted adversarial example: {'; '.join(invalid_reasons) or 'no sample was correct'}"
        )
    hits = found[valid]
    message = _message(spec, context, int(hits.sum()), len(hits), int(invalid.sum()))
    return Measurement.proportion(hits, details=details, message=message)


def _message(spec: AttackSelftestSpec, context: CheckContext, found: int, valid: int, invalid: int) -> str:
    text = (
        f"{spec.attack} found {found} of {valid} adversarial examples planted inside the ε={spec.epsilon:.4g} "
        f"({spec.norm}) ball"
    )
    if invalid:
        text += f" ({invalid} sample(s) left out: no planted example could be verified)"
    if found < valid and _below_min(spec, context, found, valid):
        text += (
            f"; an adversarial example existed on every one of them and {spec.attack} missed "
            f"{valid - found}: robustness measured with this attack on this model cannot be trusted"
        )
    return text


def _below_min(spec: AttackSelftestSpec, context: CheckContext, found: int, valid: int) -> bool:
    """Whether the found rate misses ``min`` as the verdict judges it (the interval's lower bound)."""
    if spec.min is None:
        return False
    confidence = context.policy.confidence
    lower = found / valid if confidence is None else clopper_pearson(found, valid, confidence).lower
    return lower < spec.min
