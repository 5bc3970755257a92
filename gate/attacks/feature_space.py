"""The tabular threat model: where an attacker may move a feature vector, and whether a point is feasible.

A ``FeatureSpace`` is the policy's ``features:`` section (gate/policy/features.py) made concrete for one
data set: per-feature ranges, mutability, types (integer, binary, ordinal levels, one-hot groups), linear
and logical constraints, and the unit of each feature for standardised budgets (its standard deviation in
the data unless the policy says otherwise). A ``FeatureThreat`` adds the attacker's budget: an L∞ or L2
ball on standardised changes ``(x_adv - x) / scale``, intersected with per-feature maximum changes.

Following Simonetto et al. 2022, attacks search a continuous relaxation (project onto the box, the ball
and immutability; recompute features that equality constraints determine), then round integer, ordinal
and categorical features at the end; :meth:`FeatureThreat.feasible` decides whether the result counts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch

from gate.attacks.threat import Norm
from gate.errors import DataError
from gate.policy.constraints import Comparison, Constraint
from gate.policy.features import FeatureSchema

# Reasons a point is infeasible, as bits of one int64 per sample (a resumable per-sample column).
REASONS: dict[str, int] = {
    "range": 1,
    "immutable": 2,
    "type": 4,
    "one_hot": 8,
    "constraint": 16,
    "budget": 32,
}
REASON_TEXT: dict[str, str] = {
    "range": "a feature outside its range",
    "immutable": "an immutable feature changed",
    "type": "an integer, binary or ordinal feature off its values",
    "one_hot": "a one-hot group without exactly one 1",
    "constraint": "a constraint between features broken",
    "budget": "a change beyond the attacker's budget",
}
# float32 carries about 7 digits: relations between features are judged relative to their size.
RELATIVE_TOLERANCE = 1e-5
ABSOLUTE_TOLERANCE = 1e-6
_TINY = 1e-12


def reason_names(bits: int) -> list[str]:
    """The reasons encoded in ``bits``, in ``REASONS`` order."""
    return [name for name, bit in REASONS.items() if bits & bit]


@dataclass(frozen=True, eq=False)
class LinearRelation:
    """``coefficients · x + constant  relation  0`` on the feature vector (judged, stacked with the other
    rules, by :class:`RuleSet`)."""

    coefficients: torch.Tensor
    constant: float
    relation: str


@dataclass(frozen=True, eq=False)
class FeatureRule:
    """One constraint of the policy on the feature vector: a relation, or an implication."""

    text: str
    conclusion: LinearRelation
    premise: LinearRelation | None = None
    dependent: int | None = None
    """The feature an equality determines (``total == a + b``: total), recomputed by :meth:`repair`."""


_RELATIONS = {"<=": 0, "<": 1, "==": 2}


class RuleSet:
    """All rules of a space stacked into matrices, so that judging a batch against K constraints costs a
    few matrix products instead of K passes (the search judges thousands of candidates per step)."""

    def __init__(self, rules: tuple[FeatureRule, ...], features: int, device: torch.device) -> None:
        def stack(relations: list[LinearRelation | None]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            coefficients = torch.zeros((len(relations), features), dtype=torch.float64)
            constants = torch.zeros(len(relations), dtype=torch.float64)
            kinds = torch.zeros(len(relations), dtype=torch.int64)
            for k, relation in enumerate(relations):
                if relation is not None:
                    coefficients[k], constants[k] = relation.coefficients, relation.constant
                    kinds[k] = _RELATIONS[relation.relation]
            return coefficients.to(device), constants.to(device), kinds.to(device)

        self.count = len(rules)
        self.coefficients, self.constants, self.kinds = stack([rule.conclusion for rule in rules])
        self.premise_coefficients, self.premise_constants, self.premise_kinds = stack(
            [rule.premise for rule in rules]
        )
        self.has_premise = torch.tensor([rule.premise is not None for rule in rules], dtype=torch.bool).to(
            device
        )

    @staticmethod
    def _holds(
        x: torch.Tensor, coefficients: torch.Tensor, constants: torch.Tensor, kinds: torch.Tensor
    ) -> torch.Tensor:
        value = x @ coefficients.T + constants
        tolerance = (
            RELATIVE_TOLERANCE * (x.abs() @ coefficients.abs().T + constants.abs()) + ABSOLUTE_TOLERANCE
        )
        at_most = value <= tolerance
        return torch.where(kinds == 2, value.abs() <= tolerance, torch.where(kinds == 1, value < 0, at_most))

    def premises(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, K]``: the premise of each implication holds (False for plain rules)."""
        held = self._holds(x.double(), self.premise_coefficients, self.premise_constants, self.premise_kinds)
        return held & self.has_premise

    def holds(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, K]``: each rule holds for each row."""
        double = x.double()
        conclusion = self._holds(double, self.coefficients, self.constants, self.kinds)
        return conclusion | (self.has_premise & ~self.premises(double))

    def excess(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``[N]``: the summed standardised excess over every rule (differentiable in ``x``)."""
        coefficients = self.coefficients.to(x.dtype)
        value = x @ coefficients.T + self.constants.to(x.dtype)
        unit = (coefficients.abs() * scale).sum(dim=1)
        unit = torch.where(unit > 0, unit, torch.ones_like(unit))
        violation = torch.where(self.kinds == 2, value.abs(), torch.relu(value)) / unit
        applies = torch.where(self.has_premise, self.premises(x.detach()), torch.ones_like(self.has_premise))
        return (violation * applies.to(x.dtype)).sum(dim=1)


@dataclass(frozen=True, eq=False)
class FeatureSpace:
    """Per-feature limits and rules of one data set's feature vectors ``[N, F]`` (tensors on the CPU,
    moved to the batch's device on use)."""

    names: tuple[str, ...]
    low: torch.Tensor
    high: torch.Tensor
    mutable: torch.Tensor
    integral: torch.Tensor
    """Integer and binary features (and ordinal ones without explicit levels): whole numbers."""
    scale: torch.Tensor
    max_change: torch.Tensor
    levels: dict[int, torch.Tensor] = field(default_factory=dict)
    groups: tuple[tuple[torch.Tensor, bool], ...] = ()
    """One-hot groups: the columns' indices and whether the group may change."""
    rules: tuple[FeatureRule, ...] = ()
    median: torch.Tensor | None = None
    """Each feature's median over the whole data set: the value an imputer puts in for a missing one."""
    declared: bool = False
    """The policy described the features (``features:``); without it only ranges and budgets apply."""
    _copies: dict[str, FeatureSpace] = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        return len(self.names)

    def on(self, device: torch.device) -> FeatureSpace:
        """This space with its tensors on ``device`` (each device's copy made once)."""
        if self.low.device == device:
            return self
        if str(device) not in self._copies:
            self._copies[str(device)] = self._moved(device)
        return self._copies[str(device)]

    def _moved(self, device: torch.device) -> FeatureSpace:
        move = {
            name: getattr(self, name).to(device)
            for name in ("low", "high", "mutable", "integral", "scale", "max_change")
        }
        return FeatureSpace(
            names=self.names,
            levels={i: v.to(device) for i, v in self.levels.items()},
            groups=tuple((g.to(device), m) for g, m in self.groups),
            rules=self.rules,
            median=None if self.median is None else self.median.to(device),
            declared=self.declared,
            **move,
        )

    # ------------------------------------------------------------------ feasibility of a point
    def violations(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per sample, the ``REASONS`` bits that ``x_adv`` (a change of ``x``) breaks; 0 = feasible.

        Budgets are not judged here (see :meth:`FeatureThreat.feasible`).
        """
        space = self.on(x_adv.device)
        bits = torch.zeros(len(x_adv), dtype=torch.int64, device=x_adv.device)
        tolerance = RELATIVE_TOLERANCE * (space.high - space.low) + ABSOLUTE_TOLERANCE
        outside = ((x_adv < space.low - tolerance) | (x_adv > space.high + tolerance)).any(dim=1)
        bits |= outside.long() * REASONS["range"]
        changed = (x_adv != x) & ~space.mutable
        bits |= changed.any(dim=1).long() * REASONS["immutable"]
        bits |= space.off_type(x_adv).long() * REASONS["type"]
        bits |= space.off_one_hot(x_adv, x).long() * REASONS["one_hot"]
        if space.rules:
            broken = ~space.rule_set.holds(x_adv).all(dim=1)
            bits |= broken.long() * REASONS["constraint"]
        return bits

    @functools.cached_property
    def rule_set(self) -> RuleSet:
        """The rules stacked for batch judging, on this space's device (built once)."""
        return RuleSet(self.rules, self.size, self.low.device)

    def first_violation(self, x_adv: torch.Tensor, x: torch.Tensor) -> str | None:
        """What one point ``[F]`` breaks first, in words naming the feature or the constraint."""
        space, row, clean = self.on(x_adv.device), x_adv[None], x[None]
        tolerance = RELATIVE_TOLERANCE * (space.high - space.low) + ABSOLUTE_TOLERANCE
        for i, name in enumerate(space.names):
            value = float(row[0, i])
            if value < float(space.low[i] - tolerance[i]) or value > float(space.high[i] + tolerance[i]):
                return f"feature {name!r} is {value:g}, outside its range [{float(space.low[i]):g}, {float(space.high[i]):g}]"
            if not bool(space.mutable[i]) and value != float(clean[0, i]):
                return f"the immutable feature {name!r} changed from {float(clean[0, i]):g} to {value:g}"
        if bool(space.off_type(row)[0]):
            return "an integer, binary or ordinal feature is off its values"
        if bool(space.off_one_hot(row, clean)[0]):
            return "a one-hot group does not hold exactly one 1"
        if space.rules:
            broken = (~space.rule_set.holds(row)[0]).nonzero()
            if broken.numel():
                return f"the constraint {space.rules[int(broken[0])].text!r} does not hold"
        return None

    def off_type(self, x_adv: torch.Tensor) -> torch.Tensor:
        whole = (x_adv - x_adv.round()).abs() <= ABSOLUTE_TOLERANCE * (1 + x_adv.abs())
        off = (self.integral & ~whole).any(dim=1)
        for index, levels in self.levels.items():
            distance = (x_adv[:, index, None] - levels[None]).abs().amin(dim=1)
            off |= distance > ABSOLUTE_TOLERANCE * (1 + levels.abs().max())
        return off

    def off_one_hot(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        off = torch.zeros(len(x_adv), dtype=torch.bool, device=x_adv.device)
        for columns, mutable in self.groups:
            values = x_adv[:, columns]
            binary = ((values == 0) | (values == 1)).all(dim=1)
            off |= ~binary | (values.sum(dim=1) != 1)
            if not mutable:
                off |= (values != x[:, columns]).any(dim=1)
        return off

    def penalty(self, x_adv: torch.Tensor) -> torch.Tensor:
        """Per sample, the summed standardised excess over every constraint (differentiable)."""
        if not self.rules:
            return x_adv.new_zeros(len(x_adv))
        space = self.on(x_adv.device)
        return space.rule_set.excess(x_adv, space.scale)

    # ------------------------------------------------------------------ moving towards feasibility
    def repair(self, x_adv: torch.Tensor) -> torch.Tensor:
        """Recompute each feature an equality constraint determines from the others (Simonetto et al.
        2022's repair), in the order the policy lists them; then clip to the ranges."""
        space = self.on(x_adv.device)
        for rule in space.rules:
            if rule.dependent is None or rule.premise is not None:
                continue
            index = rule.dependent
            if not bool(space.mutable[index]):
                continue
            coefficients = rule.conclusion.coefficients.to(x_adv.device, x_adv.dtype)
            # value = x_dep * 1 + rest  → x_dep = x_dep - value
            value = x_adv @ coefficients + rule.conclusion.constant
            x_adv = x_adv.clone()
            x_adv[:, index] = x_adv[:, index] - value
        return torch.maximum(torch.minimum(x_adv, space.high), space.low)

    def round_types(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Integer features to whole numbers, ordinal ones to their nearest level and one-hot groups to
        their largest column; immutable features back to ``x``."""
        space = self.on(x_adv.device)
        rounded = torch.where(space.integral, x_adv.round(), x_adv)
        for index, levels in space.levels.items():
            nearest = (rounded[:, index, None] - levels[None]).abs().argmin(dim=1)
            rounded[:, index] = levels[nearest]
        for columns, mutable in space.groups:
            if not mutable:
                rounded[:, columns] = x[:, columns]
                continue
            winner = rounded[:, columns].argmax(dim=1)
            hot = torch.zeros_like(rounded[:, columns])
            hot[torch.arange(len(rounded), device=rounded.device), winner] = 1
            rounded[:, columns] = hot
        return torch.where(space.mutable, rounded, x)

    def describe(self) -> dict[str, object]:
        """The space in the report's words."""
        return {
            "features": self.size,
            "immutable": [n for n, m in zip(self.names, self.mutable.tolist(), strict=True) if not m],
            "integral": int(self.integral.sum()),
            "ordinal": len(self.levels),
            "one_hot_groups": len(self.groups),
            "constraints": [rule.text for rule in self.rules],
        }


@dataclass(frozen=True)
class FeatureThreat:
    """A budget in a feature space: ``||(x_adv - x) / scale||_norm <= eps`` and ``|x_adv - x| <= max_change``."""

    space: FeatureSpace
    norm: Norm
    eps: float

    def reach(self, x: torch.Tensor) -> torch.Tensor:
        """How far each feature of ``x`` may move: its maximum change, for L∞ also ε times its scale, and
        nothing for an immutable feature."""
        space = self.space.on(x.device)
        reach = space.max_change.expand_as(x)
        if self.norm == "linf":
            reach = torch.minimum(reach, self.eps * space.scale)
        return torch.where(space.mutable, reach, torch.zeros_like(reach))

    def limits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Element-wise limits: ranges, per-feature maximum changes, immutability and (L∞) the ball."""
        space = self.space.on(x.device)
        reach = self.reach(x)
        lower = torch.maximum(x - reach, space.low)
        upper = torch.minimum(x + reach, space.high)
        # A clean value outside the declared range stays where it is rather than being moved by the clip.
        return torch.minimum(lower, x), torch.maximum(upper, x)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The nearest point (for L2, in standardised units, then clipped) inside the box and the ball."""
        lower, upper = self.limits(x)
        if self.norm == "l2":
            scale = self.space.scale.to(x.device)
            delta = (x_adv - x) / scale
            shrink = (self.eps / (delta.flatten(1).norm(dim=1) + _TINY)).clamp(max=1.0)
            x_adv = x + delta * shrink[:, None] * scale
        return torch.maximum(torch.minimum(x_adv, upper), lower)

    def shrink(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``x + t * (x_adv - x)`` with the largest ``t`` in [0, 1] inside the budget.

        Unlike a projection, which clips features one by one, shrinking moves along the change: a change
        that satisfies the linear constraints (both ``x`` and ``x_adv`` do) still does, since the feasible
        set of linear relations is convex.
        """
        space = self.space.on(x.device)
        delta = x_adv - x
        reach = self.reach(x)
        size = delta.abs()
        ratio = torch.where(size > reach, reach / size.clamp_min(_TINY), torch.ones_like(size))
        t = ratio.amin(dim=1).clamp(max=1.0)
        if self.norm == "l2":
            length = (delta / space.scale).norm(dim=1)
            t = torch.minimum(t, self.eps / length.clamp_min(_TINY)).clamp(max=1.0)
        return x + delta * t[:, None]

    def settle(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A candidate made concrete: projected, with determined features recomputed, shrunk back into the
        budget along its change, rounded to the feature types (a whole number that rounding pushed past
        the budget goes towards ``x`` instead), and recomputed again."""
        space = self.space.on(x.device)
        candidate = self.shrink(space.repair(self.project(x_adv, x)), x)
        rounded = space.round_types(candidate, x)
        lower, upper = self.limits(x)
        outside = (rounded < lower) | (rounded > upper)
        towards = x + torch.trunc(candidate - x)
        fixed = torch.where(space.integral & outside, towards, rounded)
        return space.repair(fixed) if space.rules else fixed

    def random_start(self, x: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """A point of the box from ``uniform`` noise in [0, 1) of ``x``'s shape (then projected on the ball)."""
        lower, upper = self.limits(x)
        return self.project(lower + uniform * (upper - lower), x)

    def distance(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """Per-sample standardised size of the change, in the budget's norm."""
        delta = (x_adv - x) / self.space.scale.to(x.device)
        return delta.abs().amax(dim=1) if self.norm == "linf" else delta.norm(dim=1)

    def feasible(self, x_adv: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ok, reasons)`` per sample: the space's rules and this budget."""
        bits = self.space.violations(x_adv, x)
        space = self.space.on(x.device)
        over = self.distance(x, x_adv) > self.eps * (1 + RELATIVE_TOLERANCE) + ABSOLUTE_TOLERANCE
        over |= ((x_adv - x).abs() > space.max_change * (1 + RELATIVE_TOLERANCE) + ABSOLUTE_TOLERANCE).any(
            dim=1
        )
        bits |= over.long() * REASONS["budget"]
        return bits == 0, bits


# ---------------------------------------------------------------------- building a space for a data set
def build_feature_space(
    schema: FeatureSchema | None,
    names: tuple[str, ...],
    *,
    low: np.ndarray,
    high: np.ndarray,
    std: np.ndarray,
    input_range: tuple[float, float] | None,
    source: str,
    median: np.ndarray | None = None,
) -> FeatureSpace:
    """The feature space of data with feature ``names`` and per-feature statistics, under ``schema``.

    Without a schema every feature is continuous and mutable within ``input_range`` (or the data's range).
    Raises ``DataError`` where the schema names a feature the data lacks, or a declared range excludes
    values the data holds.
    """
    count = len(names)
    position = {name: i for i, name in enumerate(names)}
    data_low, data_high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    if input_range is not None:
        lows, highs = np.full(count, input_range[0]), np.full(count, input_range[1])
    else:
        lows, highs = data_low.copy(), data_high.copy()
    spread = np.asarray(std, np.float64)
    scale = np.where(spread > 0, spread, 1.0)
    mutable = np.ones(count, bool)
    integral = np.zeros(count, bool)
    max_change = np.full(count, np.inf)
    levels: dict[int, torch.Tensor] = {}
    groups: list[tuple[torch.Tensor, bool]] = []
    rules: list[FeatureRule] = []
    if schema is not None:
        missing = sorted(schema.named() - set(position))
        if missing:
            shown = ", ".join(names[:12]) + (f", … ({count} in all)" if count > 12 else "")
            raise DataError(
                f"the policy's features section names {', '.join(map(repr, missing))}, which the data does "
                f"not have; its features: {shown}",
                path=source,
                hint="use the data's column names (for .npz data: f0, f1, …)",
            )
        for spec in schema.columns:
            i = position[spec.name]
            if spec.range is not None:
                lows[i], highs[i] = spec.range
            if spec.type == "binary":
                lows[i], highs[i] = 0.0, 1.0
            if spec.type in ("integer", "binary") or (spec.type == "ordinal" and spec.levels is None):
                integral[i] = True
            if spec.levels is not None:
                levels[i] = torch.tensor(spec.levels, dtype=torch.float32)
            mutable[i] = spec.mutable
            if spec.max_change is not None:
                max_change[i] = spec.max_change
            if spec.scale is not None:
                scale[i] = spec.scale
        for group in schema.one_hot:
            indices = [position[column] for column in group.columns]
            lows[indices], highs[indices] = 0.0, 1.0
            scale[indices] = group.scale
            if not group.mutable:
                mutable[indices] = False
            groups.append((torch.tensor(indices, dtype=torch.int64), group.mutable))
        rules = [_rule(constraint, position, count) for constraint in schema.parsed_constraints()]
    _check_ranges_hold_data(names, lows, highs, data_low, data_high, source)
    return FeatureSpace(
        names=tuple(names),
        low=torch.tensor(lows, dtype=torch.float32),
        high=torch.tensor(highs, dtype=torch.float32),
        mutable=torch.tensor(mutable),
        integral=torch.tensor(integral),
        scale=torch.tensor(scale, dtype=torch.float32),
        max_change=torch.tensor(max_change, dtype=torch.float32),
        levels=levels,
        groups=tuple(groups),
        rules=tuple(rules),
        median=None if median is None else torch.tensor(np.asarray(median), dtype=torch.float32),
        declared=schema is not None,
    )


def _relation(comparison: Comparison, position: dict[str, int], count: int) -> LinearRelation:
    coefficients = torch.zeros(count, dtype=torch.float64)
    for name, value in comparison.expression.coefficients.items():
        coefficients[position[name]] += value
    return LinearRelation(coefficients, comparison.expression.constant, comparison.relation)


def _rule(constraint: Constraint, position: dict[str, int], count: int) -> FeatureRule:
    premise = None if constraint.premise is None else _relation(constraint.premise, position, count)
    dependent = None if constraint.dependent is None else position[constraint.dependent]
    return FeatureRule(constraint.text, _relation(constraint.conclusion, position, count), premise, dependent)


def _check_ranges_hold_data(
    names: tuple[str, ...],
    lows: np.ndarray,
    highs: np.ndarray,
    data_low: np.ndarray,
    data_high: np.ndarray,
    source: str,
) -> None:
    tolerance = RELATIVE_TOLERANCE * (highs - lows) + ABSOLUTE_TOLERANCE
    bad = np.flatnonzero((data_low < lows - tolerance) | (data_high > highs + tolerance))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"feature {names[i]!r} takes values in [{data_low[i]:g}, {data_high[i]:g}] in the data, outside "
            f"its range [{lows[i]:g}, {highs[i]:g}] ({bad.size} feature(s) like this)",
            path=source,
            hint="widen the feature's range in the policy's features section, or fix the data",
        )


def clean_violations(space: FeatureSpace, x: torch.Tensor) -> torch.Tensor:
    """The schema's rules on the clean data itself (a schema that refuses real inputs is wrong)."""
    return space.violations(x, x)


__all__ = [
    "REASONS",
    "REASON_TEXT",
    "FeatureRule",
    "FeatureSpace",
    "FeatureThreat",
    "LinearRelation",
    "build_feature_space",
    "clean_violations",
    "reason_names",
]
