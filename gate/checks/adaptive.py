"""The adaptive escalation of an adversarial check (``adaptive: auto``): from "masking detected" to the
true number.

A gradient attack on a model that hides its gradients reports a robust accuracy that an adaptive attack
takes to zero (Athalye et al. 2018; Tramèr et al. 2020, "On Adaptive Attacks to Adversarial Example
Defenses"). Before the policy's attack runs, gate diagnoses the model once, cheaply, on the first 32
samples of the whole selection (the same in every shard) and the deployed graph, and plans what the
diagnosis calls for; each escalation then attacks only the samples still robust, and the check reports
the lower robust accuracy with the escalation that produced it:

- **randomised outputs** (two identical passes differ): every attack is judged over ``eot_samples``
  passes of the deployed model (a point is robust only if classified correctly in all of them), and the
  policy's attack runs again through the expectation of the logits over as many draws (EOT);
- **non-differentiable or disconnected steps** (Round, Floor, Ceil, Sign, an integer Cast,
  QuantizeLinear or a comparison-and-select on the input's path in the ONNX graph; a ``detach()`` in a
  PyTorch source): BPDA, the policy's attack on the twin of the deployed graph with those ops the
  identity in the backward pass; for a PyTorch source this is also a transfer attack from a surrogate
  (the exported twin) judged on the session;
- **saturated or probability outputs** (zero cross-entropy gradients on the probe, or scores that are
  probabilities): the scale-free targeted DLR margin of APGD-T (gate's ``apgd-dlr``, Croce & Hein 2020)
  on the recovered logits;
- whenever the gradients may mislead (any of these but probability outputs whose logits gate recovered),
  Square (black-box, score-based, on the session) on what is left.

A model none of these fires for costs two session passes and one gradient pass on the probe batch, and
its number is unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from gate.attacks.base import Attack, Model
from gate.attacks.catalogue import CATALOGUE, attack_info
from gate.attacks.eot import ExpectationOverDraws
from gate.attacks.registry import build_attack
from gate.checks.base import CheckContext
from gate.checks.model_sanity import differs
from gate.errors import GateError
from gate.model.gradient_probe import probe_input_gradients
from gate.policy.specs import AdversarialSpec

logger = logging.getLogger(__name__)

PROBE_SAMPLES = 32
DEAD_GRADIENT_SHARE = 0.05
"""More than this share of probe samples with a zero or non-finite cross-entropy gradient calls for margin
losses: a few exact zeros happen on honest models (a point deep inside a ReLU's dead zone)."""
RANDOM_ATOL = 1e-6
"""Two passes over the same inputs that differ by more than float rounding (this, plus model_sanity's
relative tolerance of each sample's largest logit) come from a randomised model."""


@dataclass(frozen=True)
class Diagnosis:
    """What the probe batch and the deployed graph say about how a gradient attack could be misled."""

    randomized: bool
    non_differentiable: tuple[str, ...]
    disconnected: bool
    dead_gradient_fraction: float | None
    probability_outputs: bool
    gradient_model: bool

    @property
    def saturated(self) -> bool:
        return self.dead_gradient_fraction is not None and self.dead_gradient_fraction > DEAD_GRADIENT_SHARE

    @property
    def masks_gradients(self) -> bool:
        return bool(self.non_differentiable) or self.disconnected

    @property
    def fired(self) -> bool:
        return self.randomized or self.masks_gradients or self.saturated or self.probability_outputs

    def describe(self) -> dict[str, Any]:
        return {
            "randomized_outputs": self.randomized,
            "non_differentiable_ops": list(self.non_differentiable),
            "disconnected_gradients": self.disconnected,
            "dead_gradient_fraction": self.dead_gradient_fraction,
            "probability_outputs": self.probability_outputs,
        }


@dataclass
class Escalation:
    """One attack the diagnosis calls for: its name in the report, why, and the model it attacks."""

    name: str
    reason: str
    attack: Attack
    model: Model | None = None
    """The differentiable model to attack (None: the session, for a score-based attack)."""


@dataclass
class Plan:
    """How an adversarial check runs under ``adaptive: auto``."""

    diagnosis: Diagnosis
    draws: int = 1
    """Passes of the deployed model each adversarial example is judged on (more than 1: randomised)."""
    escalations: list[Escalation] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    """Escalations the diagnosis called for but gate could not run, each with the reason."""


def diagnose(context: CheckContext) -> Diagnosis:
    """Diagnose the model once per run (cached: every adversarial check of the policy shares it)."""
    cached = context.cache.get("adaptive-diagnosis")
    if isinstance(cached, Diagnosis):
        return cached
    x, y = _probe_batch(context)
    model = context.model
    randomized = _differs(model.scores(x), model.scores(x))
    module = model.gradient_model
    dead: float | None = None
    disconnected = False
    if module is not None:
        module = module.to(context.device).eval()
        with torch.no_grad():
            randomized = randomized or _differs(module(x), module(x))
        probe = probe_input_gradients(module, x, y)
        disconnected = probe.disconnected
        dead = float(probe.dead.float().mean())
    diagnosis = Diagnosis(
        randomized=randomized,
        non_differentiable=tuple(_non_differentiable_ops(context)),
        disconnected=disconnected,
        dead_gradient_fraction=dead,
        probability_outputs=bool(model.scores_are_probabilities) or _probe_outputs_are_probabilities(context),
        gradient_model=module is not None,
    )
    context.cache["adaptive-diagnosis"] = diagnosis
    return diagnosis


def plan(spec: AdversarialSpec, attack: Attack, context: CheckContext) -> Plan:
    """The escalations the diagnosis calls for, in order of cost (cheap white-box first, Square last)."""
    diagnosis = diagnose(context)
    result = Plan(diagnosis, draws=spec.eot_samples if diagnosis.randomized else 1)
    if not diagnosis.fired:
        return result
    escalated = escalated_gradient_model(context, spec.eot_samples)
    result.unavailable.extend(escalated.unavailable)
    gradient = escalated.model
    white_box = attack if attack.needs_gradients else _build(spec, context, "apgd-ce")
    if gradient is not None:
        result.escalations.append(
            Escalation(f"{white_box.name} with {escalated.name}", escalated.reason, white_box, gradient)
        )
    margin_model = gradient if gradient is not None else _base_gradient_model(context)
    # What the policy's attack already ran in full on the same model is not run again.
    already = {spec.attack, *CATALOGUE[spec.attack].contains}
    margin_ran = "apgd-dlr" in already and gradient is None
    if (diagnosis.saturated or diagnosis.probability_outputs) and margin_model is not None and not margin_ran:
        if diagnosis.saturated:
            cause = "masked" if diagnosis.masks_gradients else "saturated outputs"
            why = (
                f"the cross-entropy gradient is zero or not finite on {diagnosis.dead_gradient_fraction:.0%} "
                f"of the probe samples ({cause})"
            )
        else:
            why = "the model's outputs are probabilities"
        why += ": the DLR margin on the logits does not saturate"
        margin = CATALOGUE["apgd-dlr"]  # APGD-T: the targeted DLR margin towards each likely wrong class
        if context.model.num_classes >= margin.min_classes and spec.norm in margin.norms:
            result.escalations.append(
                Escalation(margin.name, why, _build(spec, context, margin.name), margin_model)
            )
        else:
            result.unavailable.append(f"{margin.name}: needs at least {margin.min_classes} classes")
    square = CATALOGUE["square"]
    # Probabilities gate looks behind (a final sigmoid or softmax undone) leave the gradients honest: the
    # margin loss covers them, and a black-box search would only repeat the white-box number.
    misleading = diagnosis.randomized or diagnosis.masks_gradients or diagnosis.saturated
    misleading = misleading or (diagnosis.probability_outputs and not context.model.logits_recovered)
    if (
        misleading
        and context.task.name in square.tasks
        and spec.norm in square.norms
        and "square" not in already
    ):
        result.escalations.append(
            Escalation(
                "square",
                "a diagnosis fired, and a black-box attack needs no gradients to be misled by",
                _build(spec, context, "square"),
            )
        )
    return result


@dataclass(frozen=True)
class GradientEscalation:
    """The differentiable model the diagnosis calls for instead of the plain gradient model (the BPDA
    twin, the expectation over draws, or both), what gate calls it and why; ``unavailable`` lists the
    escalations it could not build, with the reason. ``model`` is None when none was called for or built."""

    model: Model | None
    name: str
    reason: str
    unavailable: tuple[str, ...] = ()


def escalated_gradient_model(context: CheckContext, eot_samples: int) -> GradientEscalation:
    """What a white-box attack should differentiate on this model under ``adaptive: auto`` (cached per
    run: the adversarial checks and the attack self-test share one straight-through twin)."""
    key = f"adaptive-gradient-{eot_samples}"
    cached = context.cache.get(key)
    if isinstance(cached, GradientEscalation):
        return cached
    diagnosis = diagnose(context)
    names: list[str] = []
    reasons: list[str] = []
    unavailable: list[str] = []
    model: Model | None = None
    if diagnosis.masks_gradients:
        causes = list(diagnosis.non_differentiable)
        if diagnosis.disconnected:
            causes.append("a gradient path cut in the gradient model (a detach() or an integer cast)")
        found = ", ".join(causes)
        try:
            x, _ = _probe_batch(context)
            model = context.model.straight_through_model(x).eval()
            names.append("BPDA")
            reasons.append(f"gradients are masked by {found}: straight-through twin of the deployed graph")
        except GateError as error:
            unavailable.append(f"BPDA ({found}): {error.message}")
    if diagnosis.randomized:
        base = model if model is not None else _base_gradient_model(context)
        if base is None:
            unavailable.append(f"EOT: {context.model.gradient_unavailable_reason}")
        else:
            model = ExpectationOverDraws(base, eot_samples)
            names.append("EOT")
            reasons.append(
                f"the outputs are randomised: gradients of the logits averaged over {eot_samples} draws"
            )
    escalation = GradientEscalation(model, " + ".join(names), "; ".join(reasons), tuple(unavailable))
    context.cache[key] = escalation
    return escalation


def _base_gradient_model(context: CheckContext) -> Model | None:
    module = context.model.gradient_model
    return None if module is None else module.to(context.device).eval()


def _build(spec: AdversarialSpec, context: CheckContext, name: str) -> Attack:
    """An escalation attack at the check's budget, with the catalogue's default effort."""
    attack = build_attack(
        name, norm=spec.norm, epsilon=spec.epsilon, bounds=context.policy.input.range, seed=context.seed,
        steps=None, restarts=1, step_size=None, queries=None, targeted=attack_info(name).always_targeted,
        num_classes=context.model.num_classes,
    )  # fmt: skip
    if not isinstance(attack, Attack):
        raise TypeError(f"{name} is not a norm-ball attack")
    return attack


def _probe_context(context: CheckContext) -> CheckContext:
    """The first ``PROBE_SAMPLES`` of the whole (unsharded) selection, in every shard: each shard makes
    the same diagnosis, so a sharded run escalates exactly as an unsharded one."""
    selection = context.full_selection if context.full_selection is not None else context.data.selected
    # Not recorded for --resume: it is two passes over 32 samples, redone in no time.
    probe = context.data.with_selection(selection[:PROBE_SAMPLES])
    return dataclasses.replace(context, data=probe, cache={}, resume=None)


def _probe_batch(context: CheckContext) -> tuple[torch.Tensor, torch.Tensor]:
    cached = context.cache.get("adaptive-probe")
    if cached is None:
        probe = _probe_context(context)
        batch = next(iter(probe.data.batches(PROBE_SAMPLES, context.device)))
        cached = (batch.x, batch.y, probe.outputs_are_probabilities())
        context.cache["adaptive-probe"] = cached
    return cached[0], cached[1]


def _probe_outputs_are_probabilities(context: CheckContext) -> bool:
    _probe_batch(context)
    return bool(context.cache["adaptive-probe"][2])


def _differs(first: torch.Tensor, second: torch.Tensor) -> bool:
    return bool(differs(first, second, RANDOM_ATOL).any())


def _non_differentiable_ops(context: CheckContext) -> list[str]:
    """The non-differentiable ops on the input's path in the deployed graph (empty if it cannot be read)."""
    from gate.model.twin.straight_through import non_differentiable_ops

    try:
        return non_differentiable_ops(context.model.scores_graph())
    except (GateError, ValueError, OSError) as error:  # a graph gate cannot read is reported elsewhere
        logger.info("no graph scan for non-differentiable ops: %s", error)
        return []


__all__ = [
    "Diagnosis",
    "Escalation",
    "GradientEscalation",
    "Plan",
    "diagnose",
    "escalated_gradient_model",
    "plan",
]
