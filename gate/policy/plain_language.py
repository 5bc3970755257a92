"""A resolved policy in plain language, for reviewers who do not read YAML (``gate policy explain``)."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from pathlib import Path

from gate.attacks.catalogue import AttackInfo, attack_info
from gate.policy.loader import BUILTIN_PREFIX, ResolvedPolicy, builtin_policy_dir
from gate.policy.model import Policy, Waiver
from gate.policy.specs import (
    AccuracySpec,
    AdversarialSpec,
    AttackSelftestSpec,
    AttributionSpec,
    BackgroundSpec,
    CalibrationSpec,
    CertifiedSpec,
    CheckSpec,
    CorruptionSpec,
    ExportParitySpec,
    GradientMaskingSpec,
    SubgroupSpec,
)
from gate.tasks import TASKS

NORMS = {
    "linf": "L∞ norm (no input value moves by more than ε)",
    "l2": "L2 norm (the perturbation's Euclidean length is at most ε)",
}
FEATURE_NORMS = {
    "linf": "L∞ norm on standardised features (no feature moves by more than ε times its scale, its "
    "standard deviation in the data unless declared)",
    "l2": "L2 norm on standardised features (the Euclidean length of the change, each feature divided by "
    "its scale, is at most ε)",
}


def fraction_text(value: float) -> str | None:
    """``8/255`` for 0.031372…: the fraction a policy author most likely wrote, if the value is one.

    Budgets are conventionally written in 255ths of the pixel range, so those keep the denominator 255
    (``5/255``, not the reduced ``1/51``); other exact fractions are reduced.
    """
    if value == round(value):
        return None
    in_255ths = value * 255
    if abs(in_255ths - round(in_255ths)) < 1e-9 and round(in_255ths) != 0:
        return f"{round(in_255ths)}/255"
    fraction = Fraction(value).limit_denominator(1000)
    if fraction.denominator > 1 and abs(float(fraction) - value) < 1e-12:
        return f"{fraction.numerator}/{fraction.denominator}"
    return None


def number_text(value: float) -> str:
    """A budget as a reviewer reads it: the fraction and the decimal, ``8/255 ≈ 0.03137``."""
    fraction = fraction_text(value)
    decimal = f"{value:.4g}"
    return f"{fraction} ≈ {decimal}" if fraction else decimal


def display_path(path: Path) -> str:
    """``builtin:NAME`` for gate's own policies, a path relative to the working directory where possible."""
    if path.resolve().parent == builtin_policy_dir().resolve():
        return f"{BUILTIN_PREFIX}{path.stem}"
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def explain_policy(resolved: ResolvedPolicy, today: dt.date | None = None) -> str:
    """What the resolved policy checks, how each check is judged, and what is waived until when."""
    today = today or dt.date.today()
    policy = resolved.policy
    lines = [f"Policy {policy.name!r}"]
    if policy.description:
        lines.append(f"  {' '.join(policy.description.split())}")
    lines += _sources(resolved)
    lines += ["", *_judging(policy), ""]
    lines.append(f"Checks ({len(policy.checks)}):")
    for number, spec in enumerate(policy.checks, start=1):
        lines += ["", *_explain_check(number, spec, policy, resolved)]
    lines += ["", *_waivers(policy, resolved, today)]
    return "\n".join(lines) + "\n"


def _sources(resolved: ResolvedPolicy) -> list[str]:
    files = [display_path(policy_file.path) for policy_file in resolved.files]
    if len(files) == 1:
        return [f"  From {files[0]}."]
    return [f"  From {files[-1]}, which extends {', '.join(files[:-1])} (later files override earlier ones)."]


def _judging(policy: Policy) -> list[str]:
    low, high = policy.input.range
    if policy.confidence is None:
        judged = "Each threshold is compared with the measured value itself (confidence: null), so sampling noise can pass or fail a model by chance."
    else:
        percent = (
            f"{policy.confidence:.0%}"
            if policy.confidence * 100 == round(policy.confidence * 100)
            else f"{policy.confidence:.2%}"
        )
        judged = (
            f"Each threshold is judged on a {percent} confidence bound: a minimum must be reached by the "
            f"interval's lower end and a maximum respected by its upper end, so a model passes only on "
            f"convincing evidence, not on a lucky sample."
        )
    samples = f"at most {policy.samples} evaluation samples" if policy.samples else "every evaluation sample"
    if policy.task is None:
        task = (
            "  The kind of model is inferred from the data: images [N, C, H, W] are judged as "
            "image_classification, features [N, F] as tabular_classification (the report says which)."
        )
    else:
        chosen = TASKS[policy.task]
        task = f"  The model is judged as {chosen.name}: {chosen.description}"
    return [
        "How it is judged:",
        task,
        f"  {judged}",
        f"  It uses {samples}, drawn with seed {policy.seed}.",
        *_inputs(policy, low, high),
        *(
            [
                "  A package.module:factory model must come with --weights (require_weights): one judged with"
                " the weights its factory builds is refused."
            ]
            if policy.require_weights
            else []
        ),
    ]


def _explain_check(number: int, spec: CheckSpec, policy: Policy, resolved: ResolvedPolicy) -> list[str]:
    consequence = (
        "blocks the release if it fails"
        if spec.severity == "block"
        else "only warns if it fails (does not block)"
    )
    lines = [f"{number}. {spec.id} ({spec.kind}): {consequence}."]
    what = " ".join((spec.description or (type(spec).__doc__ or "").strip().splitlines()[0]).split())
    lines.append(f"   What: {what}")
    lines += [f"   {line}" for line in _method(spec, policy)]
    lines += [f"   {line}" for line in _thresholds(spec, policy)]
    if spec.timeout:
        lines.append(
            f"   Time limit: {spec.timeout:g} s, after which the check ends as an error (which fails the run)."
        )
    origin = resolved.check_origins.get(spec.id)
    if origin is not None:
        line = f":{origin.position.line}" if origin.position else ""
        lines.append(f"   Written in: {display_path(origin.path)}{line}")
    return lines


def _inputs(policy: Policy, low: float, high: float) -> list[str]:
    """The input space in words: one range, or the features section's threat model."""
    features = policy.features
    if features is None:
        return [f"  Inputs lie in [{low:g}, {high:g}]; perturbation budgets (ε) are measured in those units."]
    immutable = [spec.name for spec in features.columns if not spec.mutable]
    typed = [f"{spec.name} ({spec.type})" for spec in features.columns if spec.type != "continuous"]
    lines = [
        "  Inputs are tabular features, each in its own range (declared, else the range it takes in the "
        "data); budgets of the constrained attacks are in standardised units of each feature. An "
        "adversarial example counts only if it keeps every rule below (docs/tabular.md)."
    ]
    if features.label:
        lines.append(f"  The label is the data's column {features.label!r}.")
    if immutable:
        lines.append(
            f"  Immutable (never changed by an attacker or the noise corruptions): {', '.join(immutable)}."
        )
    if typed:
        lines.append(f"  Whole-number and level features: {', '.join(typed)}.")
    for group in features.one_hot:
        lines.append(
            f"  One-hot group {group.name!r}: exactly one of {', '.join(group.columns)} is 1"
            + ("" if group.mutable else " (immutable)")
            + "."
        )
    for spec in features.columns:
        if spec.max_change is not None:
            lines.append(f"  {spec.name} changes by at most {spec.max_change:g} in its own units.")
    lines += [f"  Constraint: {text}" for text in features.constraints]
    return lines


def _budget(epsilon: float, norm: str, policy: Policy, spec: CheckSpec | None = None) -> str:
    attack = getattr(spec, "attack", None)
    if attack is not None and attack_info(attack).feature_space:
        return f"ε = {number_text(epsilon)} in the {FEATURE_NORMS[norm]}"
    low, high = policy.input.range
    scale = "" if (low, high) == (0.0, 1.0) else f" (input units; the range is [{low:g}, {high:g}])"
    return f"ε = {number_text(epsilon)}{scale} in the {NORMS[norm]}"


def _attack_effort(spec: AdversarialSpec | AttackSelftestSpec, info: AttackInfo) -> str:
    """The work the attack does, as it will run: only the options it reads, defaults spelled out."""
    parts = []
    if "steps" in info.options:
        parts.append(
            f"{spec.steps} steps" if spec.steps else f"{info.default_steps} steps (the attack's default)"
        )
    elif info.default_steps == 1:
        parts.append("a single step")
    if "restarts" in info.options:
        parts.append(f"{spec.restarts} restart{'s' * (spec.restarts != 1)}")
    if "queries" in info.options:
        queries = spec.queries or info.default_queries
        parts.append(f"{queries} queries" + ("" if spec.queries else " (the attack's default)"))
    if spec.step_size:
        parts.append(f"step size {number_text(spec.step_size)}")
    return ", ".join(parts)


def _method(spec: CheckSpec, policy: Policy) -> list[str]:
    if isinstance(spec, AdversarialSpec):
        info = attack_info(spec.attack)
        goal = (
            "targeted (aims at each of the most likely wrong classes in turn)"
            if spec.targeted or info.always_targeted
            else "untargeted (any wrong class counts)"
        )
        return [
            f"Attack: {info.summary}, {_attack_effort(spec, info)}, {goal}.",
            f"How it attacks: {info.description}",
            f"Budget: {_budget(spec.epsilon, spec.norm, policy, spec)}.",
            "Metric: robust accuracy, the share of samples still classified correctly under attack.",
        ]
    if isinstance(spec, GradientMaskingSpec):
        sweep = (
            ", ".join(number_text(eps) for eps in spec.sweep)
            if spec.sweep
            else "the default ε sweep (0.25x to 4x ε, then the whole input range)"
        )
        attack = attack_info(spec.attack).summary
        return [
            f"Method: diagnostics that the white-box evaluation with {attack} can be trusted (gradient "
            "masking would make robustness look better than it is): more steps and restarts must not help, "
            "a black-box attack must not beat the white-box one, larger budgets must lower accuracy down to "
            "zero.",
            f"Budget: {_budget(spec.epsilon, spec.norm, policy)}; sweep over {sweep}; {spec.steps} steps, "
            f"{spec.restarts} restart{'s' * (spec.restarts != 1)}, {spec.queries} black-box queries"
            f" on the first {spec.diagnostic_samples} samples; a diagnostic may be {spec.tolerance:g} worse before it counts.",
            "Metric: the number of diagnostics that found a problem.",
        ]
    if isinstance(spec, BackgroundSpec):
        what = {
            "bg_gap": "bg_gap, accuracy with the object on a background of its own class minus on a background "
            "of a random other class (0 when the background does not matter; lower is better)",
            "only_bg_accuracy": "accuracy with the object removed, the background alone (chance is 1/C; lower "
            "is better)",
            "mixed_rand_accuracy": "accuracy with the object on the background of a random other class (higher "
            "is better)",
        }[spec.metric]
        return [
            "Method: the Backgrounds Challenge (Xiao et al. 2020): each image is scored with its object on other "
            f"images' backgrounds and with object or background removed ({spec.fill} fill), using the data's "
            "object mask.",
            f"Metric: {what}.",
        ]
    if isinstance(spec, SubgroupSpec):
        groups = "the data's groups" if spec.by == "group" else "the classes"
        what = (
            "the accuracy of the worst group"
            if spec.metric == "worst_group_accuracy"
            else "the gap between the best and the worst group's accuracy (lower is better)"
        )
        correction = (
            "its interval widened for choosing the worst group on the data (Bonferroni over the groups)"
            if spec.correction == "bonferroni"
            else "without a correction for choosing the worst group on the data"
        )
        return [
            f"Method: accuracy per group over {groups} (groups of at least {spec.min_group_size} samples), so a "
            "weak subpopulation cannot hide in the mean (Santurkar et al. 2020).",
            f"Metric: {what}, {correction}.",
        ]
    if isinstance(spec, CalibrationSpec):
        what = {
            "ece": f"expected calibration error over {spec.bins} equal-mass bins of the top-class confidence",
            "max_overconfidence": "confidence minus accuracy in the most confident bin",
            "brier": "the Brier score of the predicted probabilities",
        }[spec.metric]
        return [
            "Method: whether the model's confidence means what it says (Guo et al. 2017), from the session's "
            "scores (softmax of logits; probabilities taken as they are).",
            f"Metric: {what} (lower is better).",
        ]
    if isinstance(spec, CertifiedSpec):
        norm = {"linf": "L∞", "l2": "L2"}[spec.norm]
        ball = f"an {norm} ball of radius {number_text(spec.radius)} in the input range"
        if spec.method == "randomized_smoothing":
            return [
                f"Method: randomized smoothing (Cohen et al. 2019): the prediction of the model under Gaussian "
                f"noise of σ = {number_text(spec.sigma or 0)}, certified for {ball} with "
                f"{spec.smoothing_option('n0')} + {spec.smoothing_option('n')} noisy forward passes per sample; "
                f"each certificate is wrong with probability at most {spec.smoothing_option('alpha'):g}.",
                "Metric: certified accuracy, the share of samples whose smoothed prediction is right and "
                "certified for the whole ball (abstentions count as wrong). It certifies the smoothed "
                "classifier, not the model as deployed.",
            ]
        return [
            f"Method: interval bounds (Gowal et al. 2018) through the deployed ONNX graph, for {ball}: a "
            "deterministic guarantee, no sampling.",
            "Metric: verified accuracy, the share of samples whose right logit provably stays above every "
            "other one in the whole ball (the bounds are loose: a sample not verified is not thereby broken).",
        ]
    if isinstance(spec, CorruptionSpec):
        corruption = spec.corruption.replace("_", " ")
        return [
            f"Corruption: {corruption} at severity {spec.level} of 5 (Hendrycks & Dietterich 2019).",
            "Metric: accuracy on the corrupted inputs.",
        ]
    if isinstance(spec, ExportParitySpec):
        lines = ["Metric: the share of samples on which the source model and the exported ONNX model agree."]
        if spec.max_abs_diff is not None:
            lines.append(f"Also: logits may differ by at most {spec.max_abs_diff:g} (absolute).")
        if spec.noise is not None:
            lines.append(f"Perturbed comparison: random L∞ noise of radius {number_text(spec.noise)}.")
        return lines
    if isinstance(spec, AttributionSpec):
        options = [
            f"target: the {spec.target}",
            f"baseline: {spec.baseline if isinstance(spec.baseline, str) else number_text(spec.baseline)}",
        ]
        options += [
            f"{name}: {value}"
            for name, value in (
                ("steps", spec.steps),
                ("samples", spec.samples),
                ("window", spec.window),
                ("stride", spec.stride),
            )
            if value
        ]
        if spec.radius:
            options.append(f"noise radius: {number_text(spec.radius)}")
        direction = "higher is better" if spec.better_when_higher else "lower is better"
        return [
            f"Method: {spec.method.replace('_', ' ')} attributions ({', '.join(options)}).",
            f"Metric: {spec.metric.replace('_', ' ')} ({direction}).",
        ]
    if isinstance(spec, AttackSelftestSpec):
        info = attack_info(spec.attack)
        return [
            f"Method: the binarization test (Zimmermann et al. 2022): on each of the first {spec.samples} "
            "samples an adversarial example is planted inside the ε-ball by a binary readout of the model's "
            f"logits, and {info.summary} ({_attack_effort(spec, info)}) must find it.",
            f"Budget: {_budget(spec.epsilon, spec.norm, policy)}.",
            "Metric: the share of planted adversarial examples the attack found; a low share means "
            "robustness measured with this attack on this model cannot be trusted.",
        ]
    if isinstance(spec, AccuracySpec):
        return ["Metric: top-1 accuracy on clean evaluation data."]
    return [f"Metric: {spec.metric_name}."]


def _thresholds(spec: CheckSpec, policy: Policy) -> list[str]:
    metric = spec.metric_name.replace("_", " ")
    bound = "measured" if policy.confidence is None else f"{policy.confidence:.0%}"
    lines = []
    for value, end, comparison in ((spec.min, "lower", "at least"), (spec.max, "upper", "at most")):
        if value is None:
            continue
        where = (
            f"the {bound} {end} confidence bound of {metric}"
            if policy.confidence
            else f"the measured {metric}"
        )
        lines.append(f"Passes only if {where} is {comparison} {_value(value, spec)}.")
    if spec.max_drop is not None:
        worse = "fell" if spec.better_when_higher else "rose"
        lines.append(
            f"Against a baseline report (--baseline): fails if {metric} {worse} by more than "
            f"{_value(spec.max_drop, spec)}, judged on the one-sided lower confidence bound of the change."
        )
    return lines


def _value(value: float, spec: CheckSpec) -> str:
    if spec.proportion and 0 <= value <= 1:
        return f"{value:g} ({value * 100:.3g}%)"
    return f"{value:g}"


def _waivers(policy: Policy, resolved: ResolvedPolicy, today: dt.date) -> list[str]:
    if not policy.waivers:
        return ["Waivers: none; every failing blocking check blocks."]
    lines = [f"Waivers ({len(policy.waivers)}):"]
    for waiver in policy.waivers:
        lines.append(f"  - {waiver.check}: {_waiver_state(waiver, today)}")
        lines.append(f"    approved by {waiver.approved_by}: {waiver.reason}")
        origin = resolved.waiver_origins.get(waiver.check)
        if origin is not None:
            line = f":{origin.position.line}" if origin.position else ""
            lines.append(f"    written in {display_path(origin.path)}{line}")
    return lines


def _waiver_state(waiver: Waiver, today: dt.date) -> str:
    days = (waiver.expires - today).days
    expires = waiver.expires.isoformat()
    if days < 0:
        ago = -days
        return f"EXPIRED on {expires} ({ago} day{'s' * (ago != 1)} ago); it no longer applies and the check blocks again."
    left = "last day today" if days == 0 else f"{days} day{'s' * (days != 1)} left"
    return f"a failure does not block until {expires} inclusive ({left})."
