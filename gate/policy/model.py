"""The policy document: pydantic models that define the format, its JSON Schema and its validation."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gate.policy.features import FeatureSchema
from gate.policy.source import quoted
from gate.policy.specs import AnyCheckSpec, Number, StrictModel
from gate.tasks import TaskName

ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class InputSpace(StrictModel):
    """The space in which inputs live and perturbation budgets are measured (before any normalisation)."""

    range: tuple[Number, Number] = (0.0, 1.0)

    @field_validator("range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] >= value[1]:
            raise ValueError(f"range must be [low, high] with low < high, found {list(value)}")
        return value


def not_blank(value: object) -> object:
    """A waiver's reason and approver are its accountability; blank text names no one and explains nothing."""
    if isinstance(value, str) and not value.strip():
        found = "an empty text" if not value else f"only whitespace ({quoted(value)})"
        raise ValueError(f"expected text that says something, found {found}")
    return value


def calendar_date(value: object) -> object:
    """Only a day of the calendar: a date, or its ISO text (``2027-03-31``, as JSON has to write it).

    pydantic alone would read ``expires: 20270331`` as 20,270,331 seconds after 1970 (1970-08-23), and
    take a date and time for a day; an expiry is a day, written so that a reviewer can read it.
    """
    if isinstance(value, dt.datetime):
        raise ValueError(
            f"expected a valid date YYYY-MM-DD, found a date and time ({value.isoformat()}); write the day only"
        )
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and ISO_DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"expected a valid date YYYY-MM-DD, found {quoted(value)}, which is no day"
            ) from None
    if isinstance(value, bool):
        found = f"the boolean {value!r}"
    elif isinstance(value, int | float):
        found = f"the number {quoted(value)}"
    else:
        found = quoted(value) if isinstance(value, str) else f"a {type(value).__name__}"
    raise ValueError(f"expected a valid date YYYY-MM-DD (such as 2027-03-31), found {found}")


Text = Annotated[str, Field(min_length=1), BeforeValidator(not_blank)]


class Waiver(StrictModel):
    """An accepted, time-limited exception: a failing check that does not block until ``expires``."""

    check: str = Field(description="The id of the waived check.")
    reason: Text
    approved_by: Text
    expires: Annotated[dt.date, BeforeValidator(calendar_date)] = Field(
        description="Last day (inclusive) on which the waiver applies, YYYY-MM-DD."
    )


class PolicyDocument(StrictModel):
    """One policy file as written: every key optional except ``version``, so files can extend others."""

    version: Literal[1]
    name: str | None = None
    description: str | None = None
    extends: list[str] = Field(
        default_factory=list, description="Policies to inherit: builtin:NAME or a path relative to this file."
    )
    task: TaskName | None = Field(
        default=None,
        description="What kind of model this is (image_classification, tabular_classification); decides "
        "which checks, attacks and corruptions apply. Omitted: inferred from the data's shape and stated "
        "in the report.",
    )
    input: InputSpace | None = None
    features: FeatureSchema | None = Field(
        default=None,
        description="Tabular models: each feature's type, range and mutability, one-hot groups and the "
        "constraints between features (docs/tabular.md). An adversarial example that breaks any of them "
        "does not count. Replaces an inherited features section as a whole.",
    )
    confidence: Annotated[float, Field(ge=0.5, lt=1)] | None = Field(
        default=None,
        description="Confidence level of the intervals, in [0.5, 1) (default 0.95); null compares point values.",
    )
    samples: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="Maximum evaluation samples."
    )
    seed: Annotated[int, Field(ge=0)] | None = None
    require_weights: bool | None = Field(
        default=None,
        description="Refuse a package.module:factory model given without --weights: it would be judged "
        "with whatever weights the factory builds (random ones, unless it loads trained weights itself).",
    )
    checks: list[AnyCheckSpec] = Field(default_factory=list)
    waivers: list[Waiver] = Field(default_factory=list)

    @field_validator("version", mode="before")
    @classmethod
    def _not_boolean(cls, value: object) -> object:
        # pydantic would read ``version: true`` as 1; a version is a number.
        if isinstance(value, bool):
            raise ValueError(f"expected the number 1, found the boolean {value!r}")
        return value

    @model_validator(mode="after")
    def _unique_check_ids(self) -> PolicyDocument:
        seen: set[str] = set()
        for index, check in enumerate(self.checks):
            if check.id in seen:
                # A typed error with the index, so the loader can point at the second use of the id.
                raise PydanticCustomError(
                    "duplicate_check_id",
                    "check id '{id}' is used twice; ids must be unique within a file",
                    {"id": check.id, "index": index},
                )
            seen.add(check.id)
        return self


class Policy(StrictModel):
    """The resolved policy after ``extends``: what a run actually evaluates."""

    name: str
    description: str | None = None
    task: TaskName | None = None
    """None: the run infers it from the data (images or feature vectors)."""
    input: InputSpace = InputSpace()
    features: FeatureSchema | None = None
    confidence: float | None = 0.95
    samples: int | None = None
    seed: int = 0
    require_weights: bool = False
    checks: list[AnyCheckSpec]
    waivers: list[Waiver] = Field(default_factory=list)

    def waiver_for(self, check_id: str) -> Waiver | None:
        """The waiver that names ``check_id`` (the latest one, if several were inherited)."""
        matching = [waiver for waiver in self.waivers if waiver.check == check_id]
        return matching[-1] if matching else None
