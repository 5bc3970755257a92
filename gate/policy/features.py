"""The ``features:`` section of a policy: what each tabular feature is and where an attacker may move it.

Follows the constrained-feature-space threat model of Simonetto et al. 2022 ("A Unified Framework for
Adversarial Attack and Defense in Constrained Feature Space"): every feature has a type, a range and a
mutability; one-hot groups encode categories; linear and logical constraints tie features together. An
adversarial example counts only if it satisfies all of them (gate/attacks/feature_space.py checks it).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from gate.policy.constraints import Constraint, ConstraintSyntaxError, parse_constraint
from gate.policy.specs import Number, PositiveNumber, StrictModel

FeatureType = Literal["continuous", "integer", "binary", "ordinal"]


class FeatureSpec(StrictModel):
    """One feature (a column of the data), by name."""

    name: str = Field(min_length=1, description="The column name (for .npz data: f0, f1, …).")
    type: FeatureType = Field(
        default="continuous",
        description="continuous; integer (whole numbers); binary (0 or 1); ordinal (one of `levels`, in order).",
    )
    range: tuple[Number, Number] | None = Field(
        default=None,
        description="[low, high] the feature can take; default: its minimum and maximum in the data.",
    )
    levels: list[Number] | None = Field(
        default=None,
        description="The values an ordinal feature takes, ascending (default: the integers in range).",
    )
    mutable: bool = Field(
        default=True,
        description="false: an attacker (or the world) cannot change it (age, an id, a birth date).",
    )
    max_change: PositiveNumber | None = Field(
        default=None, description="The largest change an attacker can make, in the feature's own units."
    )
    scale: PositiveNumber | None = Field(
        default=None,
        description="The unit of a standardised budget for this feature (default: its standard deviation in the data).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        if self.range is not None and self.range[0] >= self.range[1]:
            raise ValueError(f"range must be [low, high] with low < high, found {list(self.range)}")
        if self.type == "binary" and self.range is not None and tuple(self.range) != (0.0, 1.0):
            raise ValueError(f"a binary feature takes 0 and 1; its range cannot be {list(self.range)}")
        if self.levels is not None:
            if self.type != "ordinal":
                raise ValueError(f"levels apply to ordinal features; {self.name!r} is {self.type}")
            if len(self.levels) < 2 or sorted(set(self.levels)) != list(self.levels):
                raise ValueError(
                    f"levels must be at least two distinct values in ascending order, found {self.levels}"
                )
            if self.range is not None and not (
                self.range[0] <= self.levels[0] and self.levels[-1] <= self.range[1]
            ):
                raise ValueError(f"levels {self.levels} lie outside the range {list(self.range)}")
        return self


class OneHotGroup(StrictModel):
    """A categorical feature written as one-hot columns: exactly one of them is 1, the others 0."""

    name: str = Field(min_length=1)
    columns: Annotated[list[str], Field(min_length=2)]
    mutable: bool = True
    scale: PositiveNumber = Field(
        default=1.0, description="The unit of a standardised budget for each of the group's columns."
    )


ConstraintText = Annotated[str, Field(min_length=1, max_length=2000)]


class FeatureSchema(StrictModel):
    """The feature space of a tabular model: types, ranges, mutability, categories and constraints.

    Features the data has but ``columns`` does not list are continuous and mutable, with the data's range.
    """

    label: str | None = Field(
        default=None, description="The CSV/Parquet column holding the class label (default: label)."
    )
    columns: list[FeatureSpec] = Field(default_factory=list)
    one_hot: list[OneHotGroup] = Field(
        default_factory=list, description="Categorical features encoded as one-hot columns."
    )
    constraints: list[ConstraintText] = Field(
        default_factory=list,
        description="Linear relations every input satisfies: 'total == loan + interest', 'debt <= 0.4 * "
        "income', 'if employed == 0 then income <= 1000'. Names in `backticks` may hold spaces.",
    )

    @field_validator("constraints")
    @classmethod
    def _parse(cls, texts: list[str]) -> list[str]:
        for index, text in enumerate(texts):
            try:
                parse_constraint(text)
            except ConstraintSyntaxError as error:
                raise ValueError(f"constraints[{index}]: {error}") from None
        return texts

    @model_validator(mode="after")
    def _names_once(self) -> FeatureSchema:
        seen: dict[str, str] = {}
        for where, name in [("columns", spec.name) for spec in self.columns] + [
            (f"one_hot group {group.name!r}", column) for group in self.one_hot for column in group.columns
        ]:
            if name in seen:
                raise ValueError(f"feature {name!r} is described twice (in {seen[name]} and in {where})")
            seen[name] = where
        return self

    def parsed_constraints(self) -> list[Constraint]:
        return [parse_constraint(text) for text in self.constraints]

    def named(self) -> set[str]:
        """Every feature name the schema mentions (columns, groups and constraints)."""
        names = {spec.name for spec in self.columns}
        names.update(column for group in self.one_hot for column in group.columns)
        for constraint in self.parsed_constraints():
            names.update(constraint.names)
        return names


__all__ = ["FeatureSchema", "FeatureSpec", "FeatureType", "OneHotGroup"]
