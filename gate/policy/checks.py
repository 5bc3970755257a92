"""The check specifications a policy can contain: one pydantic class per check ``kind``.

These classes are the single source of truth for the policy format; gate/checks/ builds its registry of
implementations from them, and a test asserts that the two sets of kinds match.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    WithJsonSchema,
    model_validator,
)

FRACTION_PATTERN = r"^\s*[-+]?[0-9.]+([eE][-+]?[0-9]+)?\s*/\s*[-+]?[0-9.]+([eE][-+]?[0-9]+)?\s*$"


def parse_number(value: Any) -> Any:
    """Accept fractions written as text (``8/255``) wherever the policy takes a number."""
    if isinstance(value, bool):
        # pydantic's lax mode would read ``true`` as 1.0: in a threshold that is a typo, not a number.
        raise ValueError(f"expected a number, found the boolean {value!r}")
    if isinstance(value, str) and "/" in value:
        numerator, _, denominator = value.partition("/")
        try:
            top, bottom = float(numerator), float(denominator)
        except ValueError:
            raise ValueError(f"expected a number or a fraction such as 8/255, found {value!r}") from None
        if bottom == 0:
            raise ValueError(f"the fraction {value!r} divides by zero")
        return top / bottom
    return value


def number_json_schema(**bounds: float) -> WithJsonSchema:
    """The editor schema of a number field: a JSON number within ``bounds``, or a fraction such as "8/255".

    Without it the schema would say "number" only and reject the fractions the loader accepts.
    """
    return WithJsonSchema(
        {"anyOf": [{"type": "number", **bounds}, {"type": "string", "pattern": FRACTION_PATTERN}]}
    )


Number = Annotated[float, BeforeValidator(parse_number), Field(allow_inf_nan=False), number_json_schema()]
PositiveNumber = Annotated[
    float,
    BeforeValidator(parse_number),
    Field(gt=0, allow_inf_nan=False),
    number_json_schema(exclusiveMinimum=0),
]
NonNegativeNumber = Annotated[
    float,
    BeforeValidator(parse_number),
    Field(ge=0, allow_inf_nan=False),
    number_json_schema(minimum=0),
]
Fraction01 = Annotated[
    float,
    BeforeValidator(parse_number),
    Field(ge=0, le=1),
    number_json_schema(minimum=0, maximum=1),
]


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo in a safety policy must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckSpec(StrictModel):
    """Fields every check shares: identity, severity and thresholds on the kind's primary metric."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    kind: str
    severity: Literal["block", "warn"] = "block"
    description: str | None = None
    min: Number | None = Field(
        default=None, description="The metric's lower confidence bound must be at least this."
    )
    max: Number | None = Field(
        default=None, description="The metric's upper confidence bound must be at most this."
    )
    max_drop: NonNegativeNumber | None = Field(
        default=None,
        description="With --baseline: fail when the metric fell by more than this (absolute, metric units).",
    )
    timeout: PositiveNumber | None = Field(
        default=None, description="Seconds before the check ends as error."
    )

    primary_metric: ClassVar[str] = "value"
    higher_is_better: ClassVar[bool] = True
    proportion: ClassVar[bool] = True

    @property
    def metric_name(self) -> str:
        """The name of the primary metric that ``min``/``max`` judge."""
        return self.primary_metric

    @property
    def better_when_higher(self) -> bool:
        """Direction of improvement; a regression (``max_drop``) is a move the other way."""
        return self.higher_is_better

    @model_validator(mode="after")
    def _thresholds_consistent(self) -> CheckSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max}): no value could pass")
        if self.min is None and self.max is None and self.max_drop is None and self.requires_threshold():
            raise ValueError("a check needs a threshold: give min, max or max_drop")
        return self

    def requires_threshold(self) -> bool:
        return True


class AccuracySpec(CheckSpec):
    """Top-1 accuracy of the deployed (ONNX Runtime) model on the evaluation data."""

    kind: Literal["accuracy"]

    primary_metric: ClassVar[str] = "accuracy"


class ExportParitySpec(CheckSpec):
    """Agreement between the source model and the ONNX session, on clean and slightly perturbed inputs."""

    kind: Literal["export_parity"]
    max_abs_diff: PositiveNumber | None = Field(
        default=None, description="Largest allowed absolute difference between source and ONNX logits."
    )
    noise: NonNegativeNumber | None = Field(
        default=None,
        description="L-inf radius of the random noise for the perturbed comparison (default: the policy's "
        "smallest adversarial epsilon, else 1/255 of the input range).",
    )

    def requires_threshold(self) -> bool:
        return self.max_abs_diff is None

    primary_metric: ClassVar[str] = "agreement"


AttackName = Literal["fgsm", "pgd", "apgd-ce", "apgd-dlr", "fab", "square", "autoattack"]


class AdversarialSpec(CheckSpec):
    """Robust accuracy under a norm-bounded attack (Madry et al. 2018; Croce & Hein 2020)."""

    kind: Literal["adversarial"]
    attack: AttackName = "pgd"
    norm: Literal["linf", "l2"] = "linf"
    epsilon: PositiveNumber
    steps: PositiveInt | None = Field(default=None, description="Iterations (default per attack).")
    restarts: PositiveInt = 1
    step_size: PositiveNumber | None = None
    queries: PositiveInt | None = Field(default=None, description="Query budget of the Square attack.")
    targeted: bool = False
    examples: Annotated[int, Field(ge=0, le=32)] = 4

    primary_metric: ClassVar[str] = "robust_accuracy"


class GradientMaskingSpec(CheckSpec):
    """Diagnostics that the white-box evaluation is reliable (Carlini et al. 2019; Athalye et al. 2018).

    Metric: the number of diagnostics that found a problem; the default threshold is ``max: 0``.
    """

    kind: Literal["gradient_masking"]
    attack: Literal["pgd", "apgd-ce"] = Field(
        default="pgd", description="The white-box attack under diagnosis."
    )
    norm: Literal["linf", "l2"] = "linf"
    epsilon: PositiveNumber
    steps: PositiveInt = 20
    restarts: PositiveInt = 1
    queries: PositiveInt = Field(
        default=1000, description="Query budget of the black-box (Square) comparison."
    )
    sweep: list[PositiveNumber] | None = Field(
        default=None,
        description="Epsilons of the sweep (default: 0.25x to 4x epsilon, then the whole input range).",
    )
    diagnostic_samples: PositiveInt = Field(
        default=256, description="Samples (the first by data set position) used by the costlier diagnostics."
    )
    tolerance: Fraction01 = Field(
        default=0.05, description="How much worse a diagnostic may be before it counts."
    )
    max: Number | None = 0

    higher_is_better: ClassVar[bool] = False
    proportion: ClassVar[bool] = False

    primary_metric: ClassVar[str] = "findings"


class ModelSanitySpec(CheckSpec):
    """Model behaviour that makes an evaluation meaningless (AutoAttack's checks; Pintor et al. 2022).

    Metric: the number of diagnostics that found a problem; the default threshold is ``max: 0``.
    """

    kind: Literal["model_sanity"]
    diagnostic_samples: PositiveInt = Field(
        default=128, description="Samples (the first by data set position) the diagnostics run on."
    )
    max_abs_diff: PositiveNumber = Field(
        default=1e-3,
        description="Largest logit difference between two passes over the same input (or the same "
        "sample alone and in a batch) that still counts as the same output.",
    )
    tolerance: Fraction01 = Field(
        default=0.05, description="Share of samples with zero or non-finite gradients before it counts."
    )
    max: Number | None = 0

    higher_is_better: ClassVar[bool] = False
    proportion: ClassVar[bool] = False

    primary_metric: ClassVar[str] = "findings"


CorruptionName = Literal[
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "gaussian_blur",
    "defocus_blur",
    "brightness",
    "contrast",
    "jpeg",
    "pixelate",
]


class CorruptionSpec(CheckSpec):
    """Accuracy under a common corruption (Hendrycks & Dietterich 2019)."""

    kind: Literal["corruption"]
    corruption: CorruptionName
    level: Annotated[int, Field(ge=1, le=5)] = 3

    primary_metric: ClassVar[str] = "corrupted_accuracy"


AttributionMethod = Literal[
    "saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "occlusion", "rise"
]
AttributionMetric = Literal[
    "deletion_auc",
    "insertion_auc",
    "roi_mass",
    "pointing_game",
    "randomization_similarity",
    "max_sensitivity",
]


class AttributionSpec(CheckSpec):
    """A property of the model's attributions: faithfulness, localisation, sanity or stability."""

    kind: Literal["attribution"]
    method: AttributionMethod = "integrated_gradients"
    metric: AttributionMetric
    target: Literal["label", "prediction"] = "label"
    steps: PositiveInt | None = None
    baseline: Literal["zero", "mean"] | Number = Field(
        default="zero", description="Reference input of integrated gradients, occlusion, RISE and deletion."
    )
    radius: PositiveNumber | None = Field(
        default=None, description="L-inf radius of max_sensitivity's noise (default: 2% of the input range)."
    )
    samples: PositiveInt | None = None
    window: PositiveInt | None = None
    examples: Annotated[int, Field(ge=0, le=32)] = 4

    proportion: ClassVar[bool] = False

    @property
    def metric_name(self) -> str:
        return self.metric

    @property
    def better_when_higher(self) -> bool:
        return self.metric not in ("deletion_auc", "randomization_similarity", "max_sensitivity")


ALL_CHECK_SPECS: tuple[type[CheckSpec], ...] = (
    AccuracySpec,
    ExportParitySpec,
    AdversarialSpec,
    GradientMaskingSpec,
    ModelSanitySpec,
    CorruptionSpec,
    AttributionSpec,
)

AnyCheckSpec = Annotated[
    AccuracySpec
    | ExportParitySpec
    | AdversarialSpec
    | GradientMaskingSpec
    | ModelSanitySpec
    | CorruptionSpec
    | AttributionSpec,
    Field(discriminator="kind"),
]


def kind_of(spec_type: type[CheckSpec]) -> str:
    """The literal ``kind`` a spec class declares."""
    (kind,) = spec_type.model_fields["kind"].annotation.__args__  # type: ignore[union-attr]
    return kind
