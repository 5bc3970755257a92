"""What changed between two resolved policies, each change marked stricter, looser or neutral.

``gate policy diff`` exits 1 when anything got looser, so a CI rule can ask for a second review of a
pull request that weakens the gate (a smaller ε, a lower ``min``, a new waiver, a removed check …).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from gate.attacks.catalogue import attack_info, compare_strength
from gate.policy.features import FeatureSchema
from gate.policy.model import Policy, Waiver
from gate.policy.plain_language import number_text
from gate.policy.specs import CheckSpec

Direction = Literal["stricter", "looser", "neutral"]

KIND_RULES: dict[tuple[str, str], tuple[Direction, str]] = {
    **{
        ("attribution", field): (
            "neutral",
            "changes how attributions are computed; review the threshold with it",
        )
        for field in ("steps", "samples", "window", "stride", "baseline")
    },
    **{
        ("attribution", field): ("neutral", "a different measurement; review the threshold with it")
        for field in ("method", "metric", "target")
    },
    ("background", "fill"): ("neutral", "a different fill for removed regions; review the threshold with it"),
    ("background", "metric"): ("neutral", "a different measurement; review the threshold with it"),
    ("subgroup", "metric"): ("neutral", "a different measurement; review the threshold with it"),
    ("subgroup", "by"): ("neutral", "other groups; review the threshold with them"),
    ("calibration", "metric"): ("neutral", "a different measurement; review the threshold with it"),
    ("calibration", "bins"): (
        "neutral",
        "other bins change the estimate, not the standard; review the threshold",
    ),
    ("certified", "method"): (
        "neutral",
        "a different certificate (and metric); review the threshold with it",
    ),
    ("certified", "sigma"): (
        "neutral",
        "a different smoothing noise certifies a different smoothed classifier; review radius and threshold",
    ),
    ("certified", "n"): (
        "neutral",
        "more draws give tighter certificates, fewer looser ones, at the same alpha",
    ),
    ("certified", "n0"): ("neutral", "how many draws select the class; it does not change what is certified"),
    ("certified", "batch"): ("neutral", "how many noisy copies share a forward batch"),
    ("certified", "alpha"): (
        "neutral",
        "a smaller alpha makes each certificate surer and fewer; review the threshold",
    ),
    # A stronger attack passes its own self-test more easily: the attack's settings say which attack is
    # vouched for, not how strict the gate is; review them with the adversarial check they vouch for.
    **{
        ("attack_selftest", field): (
            "neutral",
            "the self-test vouches for another attack or budget; review it with the adversarial check",
        )
        for field in ("attack", "norm", "epsilon", "steps", "restarts", "step_size", "queries", "targeted")
    },
    ("attack_selftest", "adaptive"): (
        "neutral",
        "the self-test vouches for the attack with or without its adaptive escalation",
    ),
    ("attack_selftest", "samples"): (
        "neutral",
        "more samples make the self-test's verdict surer either way; fewer than 72 cannot pass min 0.95",
    ),
}
"""Fields whose meaning depends on the kind: attribution's ``steps`` tune a computation, not an attack;
a certificate's ``radius`` is the ball certified (``CHECK_RULES``: larger is stricter)."""

IDENTITY_FIELDS = {"id", "kind"}


@dataclass(frozen=True)
class Change:
    """One difference: what changed, from what to what, and whether the gate got stricter or looser."""

    subject: str
    field: str
    old: Any
    new: Any
    direction: Direction
    reason: str

    def render(self) -> str:
        if not self.field:
            return f"{self.direction:<8} {self.subject}: {self.reason}"
        change = f"{_show(self.old, self.field)} → {_show(self.new, self.field)}"
        return f"{self.direction:<8} {self.subject}: {self.field} {change} ({self.reason})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "field": self.field,
            "old": _plain(self.old),
            "new": _plain(self.new),
            "direction": self.direction,
            "reason": self.reason,
        }


def _plain(value: Any) -> Any:
    if isinstance(value, FeatureSchema):
        return value.model_dump(mode="json", exclude_defaults=True)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


BUDGET_FIELDS = {"epsilon", "noise", "step_size", "sweep", "radius"}


def _show(value: Any, field: str) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, float):
        return number_text(value) if field in BUDGET_FIELDS else f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(item, field) for item in value) + "]"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, FeatureSchema):
        immutable = sum(not spec.mutable for spec in value.columns)
        return (
            f"{len(value.columns)} feature(s) ({immutable} immutable), {len(value.one_hot)} one-hot group(s), "
            f"{len(value.constraints)} constraint(s)"
        )
    text = " ".join(str(value).split())
    return text if len(text) <= 60 else text[:59] + "…"


def is_looser(changes: list[Change]) -> bool:
    """Whether any change weakens the gate (``gate policy diff`` exits 1)."""
    return any(change.direction == "looser" for change in changes)


def diff_policies(old: Policy, new: Policy) -> list[Change]:
    """Every difference between two resolved policies, policy settings first, then checks, then waivers."""
    return [*_settings(old, new), *_checks(old, new), *_waivers(old, new)]


# A comparison returns the direction of a change from old to new and the reason a reviewer reads.
Rule = Callable[[Any, Any], tuple[Direction, str]]


def higher_is_stricter(what: str) -> Rule:
    def rule(old: Any, new: Any) -> tuple[Direction, str]:
        if old is None:
            return "stricter", f"a new {what}"
        if new is None:
            return "looser", f"the {what} was removed"
        return ("stricter", f"a higher {what}") if new > old else ("looser", f"a lower {what}")

    return rule


def lower_is_stricter(what: str) -> Rule:
    def rule(old: Any, new: Any) -> tuple[Direction, str]:
        if old is None:
            return "stricter", f"a new {what}"
        if new is None:
            return "looser", f"the {what} was removed"
        return ("stricter", f"a lower {what}") if new < old else ("looser", f"a higher {what}")

    return rule


def more_is_stricter(what: str, default: str = "the default") -> Rule:
    """For budgets of work (steps, restarts, queries, samples): fewer is a weaker test."""

    def rule(old: Any, new: Any) -> tuple[Direction, str]:
        if old is None or new is None:
            return "neutral", f"{what} compared with {default}; review it"
        return ("stricter", f"more {what}") if new > old else ("looser", f"fewer {what}")

    return rule


def neutral(why: str) -> Rule:
    return lambda old, new: ("neutral", why)


def _epsilon(old: Any, new: Any) -> tuple[Direction, str]:
    return ("stricter", "a larger budget ε") if new > old else ("looser", "a smaller budget ε")


def _attack(old: str, new: str) -> tuple[Direction, str]:
    # The catalogue orders white-box attacks by rank; Square only against AutoAttack, which contains it.
    order = compare_strength(old, new)
    if order == 1:
        return "stricter", "a stronger attack"
    if order == -1:
        return "looser", "a weaker attack"
    return "neutral", "a different attack of no clear relative strength"


def _severity(old: str, new: str) -> tuple[Direction, str]:
    if new == "warn":
        return "looser", "a failure now only warns"
    return "stricter", "a failure now blocks"


def _targeted(old: bool, new: bool) -> tuple[Direction, str]:
    if new:
        return "looser", "a targeted attack only counts one wrong class, so it succeeds less often"
    return "stricter", "an untargeted attack counts any wrong class"


def _always_targeted(old: CheckSpec, new: CheckSpec) -> str | None:
    """The attack both versions use, if it always targets: then a ``targeted`` flip changes nothing."""
    attack = getattr(new, "attack", None)
    if attack is None or attack != getattr(old, "attack", None) or not attack_info(attack).always_targeted:
        return None
    return attack


def _confidence(old: float | None, new: float | None) -> tuple[Direction, str]:
    if new is None:
        return "looser", "point values are compared without confidence bounds"
    if old is None:
        return "stricter", "thresholds are now judged on confidence bounds"
    return ("stricter", "a higher confidence level") if new > old else ("looser", "a lower confidence level")


def _samples(old: int | None, new: int | None) -> tuple[Direction, str]:
    # None means every sample the data has: more evidence than any cap.
    if new is None:
        return "stricter", "every sample is now evaluated"
    if old is None:
        return "looser", "evaluation is now capped at fewer samples"
    return ("stricter", "more samples") if new > old else ("looser", "fewer samples")


def _adaptive(old: str, new: str) -> tuple[Direction, str]:
    if new == "off":
        return "looser", "a masked or randomised model is no longer attacked the way its diagnosis calls for"
    return "stricter", "a masked or randomised model is now attacked the way its diagnosis calls for"


def _correction(old: str, new: str) -> tuple[Direction, str]:
    if new == "none":
        return "looser", "the worst group's interval is no longer widened for choosing it on the data"
    return "stricter", "the worst group's interval is widened for choosing it on the data (Bonferroni)"


CHECK_RULES: dict[str, Rule] = {
    "severity": _severity,
    "min": higher_is_stricter("minimum"),
    "max": lower_is_stricter("maximum"),
    "max_drop": lower_is_stricter("allowed drop (max_drop)"),
    "epsilon": _epsilon,
    "attack": _attack,
    "steps": more_is_stricter("steps", "the attack's default"),
    "restarts": more_is_stricter("restarts"),
    "queries": more_is_stricter("queries", "the attack's default"),
    "targeted": _targeted,
    "diagnostic_samples": more_is_stricter("diagnostic samples"),
    "radius": higher_is_stricter("radius (a noise radius, or the ball a certificate covers)"),
    "tolerance": lower_is_stricter("tolerance"),
    "level": higher_is_stricter("corruption severity"),
    "max_abs_diff": lower_is_stricter("allowed logit difference (max_abs_diff)"),
    "noise": higher_is_stricter("noise radius"),
    "timeout": neutral("a time limit changes when the check errors, not what passes"),
    "description": neutral("wording only"),
    "examples": neutral("how many examples the report shows"),
    "step_size": neutral("the attack's step size"),
    "norm": neutral("budgets in different norms are not comparable; review ε"),
    "corruption": neutral("a different corruption"),
    "sweep": neutral("the ε sweep of the diagnostics"),
    "correction": _correction,
    "adaptive": _adaptive,
    "epsilon_curve": neutral("which further budgets the report's ε-curve shows; the verdict uses epsilon"),
    "eot_samples": more_is_stricter("draws per gradient and passes per judgement (eot_samples)"),
    "min_group_size": neutral(
        "other groups are judged (and the correction covers another number); review the threshold"
    ),
}


def _require_weights(before: object, after: object) -> tuple[str, str]:
    if after:
        return "stricter", "a factory model now needs --weights"
    return (
        "looser",
        "a factory model may now be judged with the weights it builds itself (random, unless it loads trained ones)",
    )


def _task(old: str | None, new: str | None) -> tuple[Direction, str]:
    if old is None:
        return (
            "stricter",
            "the task is fixed: data of another shape is refused instead of judged as another task",
        )
    if new is None:
        return "looser", "the task is inferred from the data instead of fixed"
    return "neutral", "a different kind of model: other checks, attacks and corruptions apply"


def _attacker_freedom(old: FeatureSchema | None, new: FeatureSchema | None) -> list[int]:
    """+1 for each change that gives the attacker more room (a harder test), -1 for each that takes it."""
    empty = FeatureSchema()
    old, new = old or empty, new or empty
    moves = []
    before, after = set(old.constraints), set(new.constraints)
    moves += [1] * len(before - after) + [-1] * len(after - before)
    old_columns = {spec.name: spec for spec in old.columns}
    for spec in new.columns:
        previous = old_columns.get(spec.name)
        if previous is None:
            moves.append(
                -1 if (not spec.mutable or spec.max_change or spec.range or spec.type != "continuous") else 0
            )
            continue
        if previous.mutable != spec.mutable:
            moves.append(1 if spec.mutable else -1)
        if previous.max_change != spec.max_change:
            if previous.max_change is None or spec.max_change is None:
                moves.append(1 if spec.max_change is None else -1)
            else:
                moves.append(1 if spec.max_change > previous.max_change else -1)
        if previous.type != spec.type:
            moves.append(1 if spec.type == "continuous" else -1 if previous.type == "continuous" else 0)
        if previous.range != spec.range or previous.levels != spec.levels or previous.scale != spec.scale:
            moves.append(0)  # a moved range or unit: the effect depends on the data
    for name in set(old_columns) - {spec.name for spec in new.columns}:
        gone = old_columns[name]
        moves.append(1 if (not gone.mutable or gone.max_change or gone.type != "continuous") else 0)
    old_groups = {group.name: group.mutable for group in old.one_hot}
    new_groups = {group.name: group.mutable for group in new.one_hot}
    for name, mutable in new_groups.items():
        if name in old_groups and old_groups[name] != mutable:
            moves.append(1 if mutable else -1)
        elif name not in old_groups:
            moves.append(-1)
    moves += [1 for name in old_groups if name not in new_groups]
    return moves


def _features(old: FeatureSchema | None, new: FeatureSchema | None) -> tuple[Direction, str]:
    moves = _attacker_freedom(old, new)
    if moves and all(move > 0 for move in moves):
        return "stricter", "the attacker may change more (fewer constraints, immutable features or limits)"
    if moves and all(move < 0 for move in moves):
        return "looser", "the attacker may change less (more constraints, immutable features or limits)"
    return "neutral", "the feature space changed in both directions or in ranges and units; review it"


SETTING_RULES: dict[str, Rule] = {
    "task": _task,
    "features": _features,
    "require_weights": _require_weights,
    "confidence": _confidence,
    "samples": _samples,
    "seed": neutral("a different seed draws different samples and attack starts"),
    "input": neutral("ε is measured in input units; review the budgets against the new range"),
    "name": neutral("the policy's name"),
    "description": neutral("wording only"),
}


def _settings(old: Policy, new: Policy) -> Iterator[Change]:
    for field, rule in SETTING_RULES.items():
        before, after = getattr(old, field), getattr(new, field)
        if field == "input":
            before, after = before.range, after.range
        if before != after:
            direction, reason = rule(before, after)
            yield Change("policy", field, before, after, direction, reason)


def _checks(old: Policy, new: Policy) -> Iterator[Change]:
    old_checks = {check.id: check for check in old.checks}
    new_checks = {check.id: check for check in new.checks}
    for check_id, check in old_checks.items():
        replacement = new_checks.get(check_id)
        if replacement is None or replacement.kind != check.kind:
            yield Change(
                f"check {check_id}", "", check.kind, None, "looser", f"the {check.kind} check was removed"
            )
        else:
            yield from _check_fields(check, replacement)
    for check_id, check in new_checks.items():
        previous = old_checks.get(check_id)
        if previous is None or previous.kind != check.kind:
            yield Change(f"check {check_id}", "", None, check.kind, "stricter", f"a new {check.kind} check")


def _check_fields(old: CheckSpec, new: CheckSpec) -> Iterator[Change]:
    subject = f"check {old.id}"
    for field in type(old).model_fields:
        before, after = getattr(old, field), getattr(new, field)
        if before == after:
            continue
        if (old.kind, field) in KIND_RULES:
            direction, reason = KIND_RULES[(old.kind, field)]
        elif field == "targeted" and (attack := _always_targeted(old, new)) is not None:
            direction, reason = "neutral", f"{attack} is targeted whatever the policy says"
        else:
            rule = CHECK_RULES.get(field, neutral("a setting of how the check is computed"))
            direction, reason = rule(before, after)
        yield Change(subject, field, before, after, direction, reason)


def _waivers(old: Policy, new: Policy) -> Iterator[Change]:
    old_waivers: dict[str, Waiver] = {waiver.check: waiver for waiver in old.waivers}
    new_waivers: dict[str, Waiver] = {waiver.check: waiver for waiver in new.waivers}
    for check_id, waiver in new_waivers.items():
        previous = old_waivers.get(check_id)
        subject = f"waiver {check_id}"
        if previous is None:
            yield Change(
                subject,
                "",
                None,
                waiver.expires,
                "looser",
                "a new waiver lets the check fail without blocking",
            )
            continue
        if waiver.expires != previous.expires:
            later = waiver.expires > previous.expires
            direction: Direction = "looser" if later else "stricter"
            reason = "the waiver runs longer" if later else "the waiver ends sooner"
            yield Change(subject, "expires", previous.expires, waiver.expires, direction, reason)
        for field in ("reason", "approved_by"):
            if getattr(waiver, field) != getattr(previous, field):
                yield Change(
                    subject,
                    field,
                    getattr(previous, field),
                    getattr(waiver, field),
                    "neutral",
                    "wording only",
                )
    for check_id, waiver in old_waivers.items():
        if check_id not in new_waivers:
            yield Change(f"waiver {check_id}", "", waiver.expires, None, "stricter", "the waiver was removed")
