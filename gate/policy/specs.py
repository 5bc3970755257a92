"""The check specifications a policy can contain: one pydantic class per check ``kind``.

These classes are the single source of truth for the policy format; gate/checks/ builds its registry of
implementations from them, and a test asserts that the two sets of kinds match.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from statistics import NormalDist
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gate.attacks.catalogue import CATALOGUE, OPTIONS, masking_diagnosable, option_help, policy_refusal
from gate.policy.source import quoted
from gate.tasks.base import InputKind

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
            raise ValueError(
                f"expected a number or a fraction such as 8/255, found {quoted(value)}"
            ) from None
        if bottom == 0:
            raise ValueError(f"the fraction {quoted(value)} divides by zero")
        return top / bottom
    return value


def number_json_schema(**bounds: float) -> WithJsonSchema:
    """The editor schema of a number field: a JSON number within ``bounds``, or a fraction such as "8/255".

    Without it the schema would say "number" only and reject the fractions the loader accepts.
    """
    return WithJsonSchema(
        {"anyOf": [{"type": "number", **bounds}, {"type": "string", "pattern": FRACTION_PATTERN}]}
    )


FLOAT32_SMALLEST_NORMAL = 2.0**-126
FLOAT32_LARGEST = 3.4028234663852886e38


def float32_budget(value: float) -> float:
    """Refuse a perturbation size that float32, in which models and attacks compute, cannot hold.

    ``epsilon: 1e-300`` is 0 in float32: the attack would perturb nothing and robust accuracy would equal
    clean accuracy. A subnormal keeps a few bits at best, and past the largest float32 a budget is
    infinite (a step of inf times a zero gradient sign is NaN). Zero itself (``noise: 0``) stays allowed.
    """
    if value == 0:
        return value
    try:
        rounded = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:  # some builds refuse to pack, others give inf
        rounded = math.inf
    if math.isinf(rounded):
        raise ValueError(f"expected at most {FLOAT32_LARGEST:.4g}, the largest float32; found {value:g}")
    if rounded < FLOAT32_SMALLEST_NORMAL:
        became = "0" if rounded == 0 else f"the subnormal {rounded:.3g}"
        raise ValueError(
            f"expected a size that float32 holds as a normal number (at least {FLOAT32_SMALLEST_NORMAL:.4g}); "
            f"found {value:g}, which float32 rounds to {became}"
        )
    return value


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
# An epsilon, step, noise or radius: a positive size the float32 computation can represent.
Budget = Annotated[PositiveNumber, AfterValidator(float32_budget)]
NonNegativeBudget = Annotated[NonNegativeNumber, AfterValidator(float32_budget)]
Fraction01 = Annotated[
    float,
    BeforeValidator(parse_number),
    Field(ge=0, le=1),
    number_json_schema(minimum=0, maximum=1),
]


@dataclass(frozen=True)
class MetricScale:
    """The values a metric can take, so that a threshold no measurement could meet is refused on reading.

    ``proportion``: a share of per-sample successes (judged with an exact binomial interval).
    """

    low: float | None
    high: float | None
    what: str
    proportion: bool = False

    def problem(self, field: str, value: float, metric: str) -> str | None:
        """Why ``value`` cannot mean anything as ``field`` of a threshold on ``metric``; None if it can."""
        if field == "max_drop":
            if self.low is None or self.high is None or value <= self.high - self.low:
                return None
            return (
                f"expected at most {self.high - self.low:g}: {metric} is {self.what} in "
                f"[{self.low:g}, {self.high:g}], so it cannot change by more; found {value:g}"
            )
        if (self.low is None or value >= self.low) and (self.high is None or value <= self.high):
            return None
        if self.high is None:
            expected = f"a number of at least {self.low:g}"
        else:
            expected = f"a number in [{self.low:g}, {self.high:g}]"
        percent = self.proportion and 1 < value <= 100
        hint = f" (if that is a percentage, write {value / 100:g})" if percent else ""
        return f"expected {expected}: {metric} is {self.what}; found {value:g}{hint}"


PROPORTION = MetricScale(0.0, 1.0, "a proportion", proportion=True)
FINDINGS = MetricScale(0.0, None, "a count of findings")


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
    scale: ClassVar[MetricScale] = PROPORTION

    @property
    def metric_name(self) -> str:
        """The name of the primary metric that ``min``/``max`` judge."""
        return self.primary_metric

    @property
    def better_when_higher(self) -> bool:
        """Direction of improvement; a regression (``max_drop``) is a move the other way."""
        return self.higher_is_better

    @property
    def metric_scale(self) -> MetricScale:
        """What values the primary metric can take (the one place each metric's kind is written)."""
        return self.scale

    @property
    def proportion(self) -> bool:
        """Whether the primary metric is a share of per-sample successes."""
        return self.metric_scale.proportion

    @model_validator(mode="after")
    def _thresholds_consistent(self) -> CheckSpec:
        for name in ("min", "max", "max_drop"):
            value = getattr(self, name)
            problem = None if value is None else self.metric_scale.problem(name, value, self.metric_name)
            if problem is not None:
                # A typed error naming the field, so the loader points at ``min:``, not at the check.
                raise PydanticCustomError("field_value", "{message}", {"field": name, "message": problem})
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
    noise: NonNegativeBudget | None = Field(
        default=None,
        description="L-inf radius of the random noise for the perturbed comparison (default: the policy's "
        "smallest adversarial epsilon, else 1/255 of the input range).",
    )

    def requires_threshold(self) -> bool:
        return self.max_abs_diff is None

    primary_metric: ClassVar[str] = "agreement"


# The attack names and what each accepts come from the torch-free catalogue (gate/attacks/catalogue.py).
AttackName = Literal[tuple(CATALOGUE)]  # type: ignore[valid-type]
MaskingAttackName = Literal[masking_diagnosable()]  # type: ignore[valid-type]


def field_problem(field: str, message: str) -> PydanticCustomError:
    """A model-level rule about one field, reported by the loader at that field's line."""
    return PydanticCustomError("field_value", "{message}", {"field": field, "message": message})


def attack_refused(attack: str, norm: str, values: dict[str, Any]) -> None:
    """Refuse a norm or an attack option that ``attack`` cannot honour, naming the field for the loader."""
    refusal = policy_refusal(attack, norm, values)
    if refusal is not None:
        field, message = refusal
        raise PydanticCustomError("field_value", "{message}", {"field": field, "message": message})


class AttackOptions(CheckSpec):
    """The policy fields that name and tune a norm-ball attack (the catalogue's ``OPTIONS``), shared by
    the checks that run one: the adversarial check, and the self-test that vouches for it."""

    attack: AttackName = "pgd"
    norm: Literal["linf", "l2"] = "linf"
    epsilon: Budget
    steps: PositiveInt | None = Field(default=None, description=option_help("steps"))
    restarts: PositiveInt = Field(default=1, description=option_help("restarts"))
    step_size: Budget | None = Field(default=None, description=option_help("step_size"))
    queries: PositiveInt | None = Field(default=None, description=option_help("queries"))
    targeted: bool = Field(default=False, description=option_help("targeted"))

    @model_validator(mode="after")
    def _attack_reads_its_options(self) -> AttackOptions:
        # An option the attack would silently drop makes the verdict describe a test that never ran.
        attack_refused(self.attack, self.norm, {option: getattr(self, option) for option in OPTIONS})
        return self


class AdversarialSpec(AttackOptions):
    """Robust accuracy under a norm-bounded attack (Madry et al. 2018; Croce & Hein 2020)."""

    kind: Literal["adversarial"]
    examples: Annotated[int, Field(ge=0, le=32)] = 4
    adaptive: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: diagnose the model first (randomised outputs, non-differentiable or disconnected "
        "steps, saturated or probability outputs) and escalate to the attack the diagnosis calls for (EOT, "
        "BPDA through the ONNX twin, DLR margin losses, Square), reporting the lower robust accuracy and the "
        "escalation that produced it; a model no diagnosis fires for runs the policy's attack alone. off: "
        "the policy's attack only.",
    )
    epsilon_curve: list[Annotated[float, Field(gt=0, le=16)]] = Field(
        default_factory=lambda: [0.5, 2.0],
        max_length=8,
        description="Multiples of epsilon at which robust accuracy is also measured, for the report's "
        "ε-curve (with ε = 0, the clean accuracy, and epsilon itself). Smaller budgets attack only the "
        "samples broken at epsilon, larger ones only those still robust, so a point costs at most one more "
        "pass of the attack; [] draws no curve. The verdict uses epsilon alone.",
    )
    eot_samples: Annotated[int, Field(ge=2, le=1000)] = Field(
        default=20,
        description="For a randomised model (adaptive: auto): draws averaged per gradient (EOT), and passes of "
        "the deployed model each adversarial example is judged on (robust only if correct in all).",
    )

    primary_metric: ClassVar[str] = "robust_accuracy"


class GradientMaskingSpec(CheckSpec):
    """Diagnostics that the white-box evaluation is reliable (Carlini et al. 2019; Athalye et al. 2018).

    Metric: the number of diagnostics that found a problem; the default threshold is ``max: 0``.
    """

    kind: Literal["gradient_masking"]
    attack: MaskingAttackName = Field(default="pgd", description="The white-box attack under diagnosis.")
    norm: Literal["linf", "l2"] = "linf"
    epsilon: Budget
    steps: PositiveInt = 20
    restarts: PositiveInt = 1
    queries: PositiveInt = Field(
        default=1000, description="Query budget of the black-box (Square) comparison."
    )
    sweep: list[Budget] | None = Field(
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
    scale: ClassVar[MetricScale] = FINDINGS

    primary_metric: ClassVar[str] = "findings"

    @model_validator(mode="after")
    def _attacks_support_the_norm(self) -> GradientMaskingSpec:
        for attack in (self.attack, "square"):  # Square is the black-box comparison
            attack_refused(attack, self.norm, {})
        return self


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
        "sample alone and in a batch) that still counts as the same output, plus 1e-5 of the sample's "
        "largest |logit| (float32 rounding grows with the logits' scale).",
    )
    tolerance: Fraction01 = Field(
        default=0.05, description="Share of samples with zero or non-finite gradients before it counts."
    )
    max: Number | None = 0

    higher_is_better: ClassVar[bool] = False
    scale: ClassVar[MetricScale] = FINDINGS

    primary_metric: ClassVar[str] = "findings"


# The one list of corruptions and the inputs each applies to (gate/corruptions.py implements them): the
# noises are elementwise, so they also apply to tabular features; blurs, JPEG and the rest need images.
CORRUPTION_INPUTS: dict[str, tuple[InputKind, ...]] = {
    "gaussian_noise": ("images", "features"),
    "shot_noise": ("images", "features"),
    "impulse_noise": ("images", "features"),
    "speckle_noise": ("images", "features"),
    "gaussian_blur": ("images",),
    "defocus_blur": ("images",),
    "brightness": ("images",),
    "contrast": ("images",),
    "jpeg": ("images",),
    "pixelate": ("images",),
    "feature_noise": ("features",),
    "missing_values": ("features",),
}
CorruptionName = Literal[tuple(CORRUPTION_INPUTS)]  # type: ignore[valid-type]


class CorruptionSpec(CheckSpec):
    """Accuracy under a common corruption (Hendrycks & Dietterich 2019)."""

    kind: Literal["corruption"]
    corruption: CorruptionName
    level: Annotated[int, Field(ge=1, le=5)] = 3

    primary_metric: ClassVar[str] = "corrupted_accuracy"


# The one list of attribution methods and the inputs each explains (gate/explain/ implements them): the
# gradient methods and occlusion (one feature at a time) are defined per feature; RISE's random masks are
# smooth grids over pixels.
ATTRIBUTION_METHOD_INPUTS: dict[str, tuple[InputKind, ...]] = {
    "saliency": ("images", "features"),
    "input_x_gradient": ("images", "features"),
    "integrated_gradients": ("images", "features"),
    "smoothgrad": ("images", "features"),
    "occlusion": ("images", "features"),
    "rise": ("images",),
}
AttributionMethod = Literal[tuple(ATTRIBUTION_METHOD_INPUTS)]  # type: ignore[valid-type]


@dataclass(frozen=True)
class AttributionMetricInfo:
    """What an attribution metric's values mean, and the inputs it is defined on.

    Attributes:
        higher_is_better: The direction of improvement.
        scale: The values it can take.
        inputs: The input kinds it judges (the localisation metrics need a mask of pixels).
    """

    higher_is_better: bool
    scale: MetricScale
    inputs: tuple[InputKind, ...] = ("images", "features")


# The one list of attribution metrics (gate/explain/metrics holds their implementations and papers).
ATTRIBUTION_METRICS: dict[str, AttributionMetricInfo] = {
    "deletion_auc": AttributionMetricInfo(False, MetricScale(0.0, 1.0, "an area under a probability curve")),
    "insertion_auc": AttributionMetricInfo(True, MetricScale(0.0, 1.0, "an area under a probability curve")),
    "roi_mass": AttributionMetricInfo(True, MetricScale(0.0, 1.0, "a share of the relevance"), ("images",)),
    "pointing_game": AttributionMetricInfo(True, PROPORTION, ("images",)),
    "randomization_similarity": AttributionMetricInfo(False, MetricScale(-1.0, 1.0, "a rank correlation")),
    "max_sensitivity": AttributionMetricInfo(False, MetricScale(0.0, None, "a relative change")),
    "feature_importance_stability": AttributionMetricInfo(True, MetricScale(-1.0, 1.0, "a rank correlation")),
}
AttributionMetric = Literal[tuple(ATTRIBUTION_METRICS)]  # type: ignore[valid-type]

# Settings that mean an image construction, refused on other inputs rather than silently ignored:
# (field, the value refused, or None for any value) -> the inputs it applies to, and what it means there.
ATTRIBUTION_SETTING_INPUTS: dict[tuple[str, str | None], tuple[tuple[InputKind, ...], str]] = {
    ("window", None): (
        ("images",),
        "it is the side of occlusion's square patch in pixels; on features occlusion replaces one feature "
        "at a time",
    ),
    ("stride", None): (
        ("images",),
        "it is the step of occlusion's square patch in pixels; on features occlusion replaces one feature at "
        "a time",
    ),
    ("baseline", "mean"): (
        ("images",),
        "it is each image's per-channel mean; a feature vector has no channels (give a number, or zero)",
    ),
}


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
    radius: Budget | None = Field(
        default=None,
        description="Noise size: the L-inf radius of max_sensitivity's uniform noise, the standard deviation "
        "of feature_importance_stability's Gaussian noise (default: 2% of the input range).",
    )
    samples: PositiveInt | None = None
    window: PositiveInt | None = Field(
        default=None,
        description="Side of occlusion's square patch, in pixels (images only; default: the shorter image "
        "side // 8, at least 2).",
    )
    stride: PositiveInt | None = Field(
        default=None,
        description="Step between occlusion's patch positions, in pixels (images only; default: half the "
        "window, at least 1; at most the window).",
    )
    examples: Annotated[int, Field(ge=0, le=32)] = 4

    @model_validator(mode="after")
    def _patches_cover_the_image(self) -> AttributionSpec:
        if self.window is not None and self.stride is not None and self.stride > self.window:
            raise ValueError(
                f"stride ({self.stride}) is longer than window ({self.window}): pixels between occlusion's "
                "patches would get no attribution"
            )
        return self

    def settings_outside(self, input_kind: InputKind) -> list[tuple[str, str]]:
        """``(field, why)`` for each setting of this spec that has no meaning for ``input_kind`` inputs."""
        refused = []
        for (field, value), (kinds, meaning) in ATTRIBUTION_SETTING_INPUTS.items():
            chosen = getattr(self, field)
            if input_kind not in kinds and chosen is not None and (value is None or chosen == value):
                refused.append((field, meaning))
        return refused

    @property
    def metric_name(self) -> str:
        return self.metric

    @property
    def better_when_higher(self) -> bool:
        return ATTRIBUTION_METRICS[self.metric].higher_is_better

    @property
    def metric_scale(self) -> MetricScale:
        return ATTRIBUTION_METRICS[self.metric].scale


# The one list of certification methods: the metric each reports and the norms it certifies.
CERTIFICATION_METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "randomized_smoothing": ("certified_accuracy", ("l2",)),
    "interval_bounds": ("verified_accuracy", ("linf", "l2")),
}
CertificationMethod = Literal[tuple(CERTIFICATION_METHODS)]  # type: ignore[valid-type]
# Defaults of randomized smoothing (Cohen et al. 2019's CERTIFY); n is documented in docs/certified.md.
SMOOTHING_DEFAULTS = {"n0": 100, "n": 10_000, "alpha": 0.001, "batch": 1000}
_SMOOTHING_ONLY = ("sigma", "n0", "n", "alpha", "batch")


class CertifiedSpec(CheckSpec):
    """Certified accuracy: the share of samples whose prediction is right and provably unchanged in the ball.

    A guarantee, not an attack that failed: randomized smoothing (Cohen et al. 2019) or interval bounds
    (Gowal et al. 2018), see docs/certified.md.
    """

    kind: Literal["certified"]
    method: CertificationMethod = "randomized_smoothing"
    norm: Literal["l2", "linf"] = Field(
        default="l2",
        description="The ball certified: randomized smoothing certifies L2 only; interval bounds L-inf, and L2 "
        "through the box that contains the ball (sound, looser).",
    )
    radius: Budget = Field(description="Radius of the certified ball, in the policy's input range.")
    sigma: Budget | None = Field(
        default=None,
        description="randomized_smoothing: standard deviation of the Gaussian noise, in the input range (required).",
    )
    n0: PositiveInt | None = Field(
        default=None, description="randomized_smoothing: noise draws that select the class (default 100)."
    )
    n: PositiveInt | None = Field(
        default=None,
        description="randomized_smoothing: noise draws that estimate its probability (default 10,000).",
    )
    alpha: Annotated[float, Field(gt=0, lt=0.5)] | None = Field(
        default=None,
        description="randomized_smoothing: probability that a certificate is wrong (default 0.001).",
    )
    batch: PositiveInt | None = Field(
        default=None, description="randomized_smoothing: noisy copies per forward batch (default 1000)."
    )

    @model_validator(mode="after")
    def _method_reads_its_options(self) -> CertifiedSpec:
        _, norms = CERTIFICATION_METHODS[self.method]
        if self.norm not in norms:
            raise field_problem(
                "norm",
                f"{self.method} certifies {' and '.join(norms)} balls, not {self.norm}; use interval_bounds for L-inf",
            )
        if self.method == "randomized_smoothing" and self.sigma is None:
            raise field_problem(
                "sigma",
                "randomized_smoothing needs sigma, the noise the smoothed classifier adds (e.g. 0.25; the model "
                "should be trained with noise of that size)",
            )
        given = [name for name in _SMOOTHING_ONLY if getattr(self, name) is not None]
        if self.method != "randomized_smoothing" and given:
            raise field_problem(
                given[0], f"{given[0]} is an option of randomized_smoothing, not of {self.method}"
            )
        if self.method == "randomized_smoothing" and self.radius > self.largest_certifiable_radius():
            n, alpha = int(self.smoothing_option("n")), self.smoothing_option("alpha")
            raise field_problem(
                "radius",
                f"no sample can be certified at radius {self.radius:g}: with sigma {self.sigma:g}, n = {n} and "
                f"alpha = {alpha:g}, even n correct draws of n certify at most sigma·Φ⁻¹(alpha^(1/n)) = "
                f"{self.largest_certifiable_radius():.4g}; raise n or sigma, or lower radius",
            )
        return self

    def largest_certifiable_radius(self) -> float:
        """What CERTIFY gives when all ``n`` draws vote for the class: ``sigma · Φ⁻¹(alpha^(1/n))``."""
        n, alpha = int(self.smoothing_option("n")), float(self.smoothing_option("alpha"))
        return float(self.sigma or 0.0) * NormalDist().inv_cdf(alpha ** (1.0 / n))

    def smoothing_option(self, name: str) -> float:
        """``n0``, ``n``, ``alpha`` or ``batch`` as given, else its documented default."""
        value = getattr(self, name)
        return SMOOTHING_DEFAULTS[name] if value is None else value

    @property
    def metric_name(self) -> str:
        return CERTIFICATION_METHODS[self.method][0]


@dataclass(frozen=True)
class HumanAlignedMetric:
    """A metric of the human-aligned checks: its direction and the values it takes."""

    higher_is_better: bool
    scale: MetricScale


DIFFERENCE = MetricScale(-1.0, 1.0, "a difference of two accuracies")

# Xiao, Engstrom, Ilyas & Madry 2020 (the Backgrounds Challenge): gate/checks/background.py.
BACKGROUND_METRICS: dict[str, HumanAlignedMetric] = {
    "bg_gap": HumanAlignedMetric(False, DIFFERENCE),
    "only_bg_accuracy": HumanAlignedMetric(False, PROPORTION),
    "mixed_rand_accuracy": HumanAlignedMetric(True, PROPORTION),
}
# Santurkar, Tsipras & Madry 2020 (BREEDS): gate/checks/subgroup.py.
SUBGROUP_METRICS: dict[str, HumanAlignedMetric] = {
    "worst_group_accuracy": HumanAlignedMetric(True, MetricScale(0.0, 1.0, "an accuracy")),
    "group_gap": HumanAlignedMetric(False, MetricScale(0.0, 1.0, "a difference of two accuracies")),
}
# Guo et al. 2017 (ECE), Brier 1950: gate/checks/calibration.py.
CALIBRATION_METRICS: dict[str, HumanAlignedMetric] = {
    "ece": HumanAlignedMetric(False, MetricScale(0.0, 1.0, "a calibration error")),
    "max_overconfidence": HumanAlignedMetric(False, MetricScale(0.0, 1.0, "a calibration error")),
    "brier": HumanAlignedMetric(False, MetricScale(0.0, 2.0, "a Brier score")),
}


class _HumanAlignedSpec(CheckSpec):
    """The shared shape of the checks whose ``metric`` field picks one of the kind's metrics."""

    metrics: ClassVar[dict[str, HumanAlignedMetric]] = {}
    metric: str

    @property
    def metric_name(self) -> str:
        return self.metric

    @property
    def better_when_higher(self) -> bool:
        return self.metrics[self.metric].higher_is_better

    @property
    def metric_scale(self) -> MetricScale:
        return self.metrics[self.metric].scale


class BackgroundSpec(_HumanAlignedSpec):
    """Background reliance: accuracy when the object's background is removed, swapped or kept alone.

    Needs ``mask`` in the data (1 on the object). Variants after Xiao et al. 2020: only_fg, only_bg,
    mixed_same, mixed_rand, mixed_next; see docs/checks.md.
    """

    kind: Literal["background"]
    metrics: ClassVar[dict[str, HumanAlignedMetric]] = BACKGROUND_METRICS
    metric: Literal[tuple(BACKGROUND_METRICS)] = Field(  # type: ignore[valid-type]
        default="bg_gap",
        description="bg_gap = accuracy(mixed_same) - accuracy(mixed_rand) (lower is better), "
        "only_bg_accuracy (lower is better) or mixed_rand_accuracy (higher is better).",
    )
    fill: Literal["black", "blur"] = Field(
        default="black", description="What replaces a removed background or object."
    )
    examples: Annotated[int, Field(ge=0, le=32)] = 4


class SubgroupSpec(_HumanAlignedSpec):
    """The worst subgroup's accuracy: a weak group hides in the mean (Santurkar et al. 2020, BREEDS).

    Groups come from the data's ``group`` array (``by: group``) or are the classes (``by: class``).
    """

    kind: Literal["subgroup"]
    metrics: ClassVar[dict[str, HumanAlignedMetric]] = SUBGROUP_METRICS
    metric: Literal[tuple(SUBGROUP_METRICS)] = Field(  # type: ignore[valid-type]
        default="worst_group_accuracy",
        description="worst_group_accuracy (higher is better) or group_gap = best - worst (lower is better).",
    )
    by: Literal["group", "class"] = Field(
        default="group", description="group: the data's group array; class: one group per class."
    )
    correction: Literal["bonferroni", "none"] = Field(
        default="bonferroni",
        description="The worst group is chosen on the data: its interval is widened for the choice "
        "(Bonferroni over the groups) unless none.",
    )
    min_group_size: PositiveInt = Field(
        default=1, description="Groups with fewer evaluation samples are reported but not judged."
    )


class CalibrationSpec(_HumanAlignedSpec):
    """Whether the model's confidence means what it says (Guo et al. 2017)."""

    kind: Literal["calibration"]
    metrics: ClassVar[dict[str, HumanAlignedMetric]] = CALIBRATION_METRICS
    metric: Literal[tuple(CALIBRATION_METRICS)] = Field(  # type: ignore[valid-type]
        default="ece",
        description="ece (expected calibration error, equal-mass bins), max_overconfidence (confidence "
        "minus accuracy in the most confident bin) or brier; all lower is better.",
    )
    bins: Annotated[int, Field(ge=2, le=100)] = Field(
        default=15, description="Equal-mass bins of the confidence for ece and the reliability diagram."
    )


SELFTEST_CLASSES = 2
"""The self-test attacks a binary model (gate/checks/attack_selftest.py): planted example or not."""


class AttackSelftestSpec(AttackOptions):
    """Whether the attack finds adversarial examples planted where one is known to exist.

    The binarization test of Zimmermann et al. 2022. Per sample, a binary readout of the model's logits is fitted so that a point inside the ε-ball is
    adversarial; the metric is the share of those planted examples the attack finds.
    """

    kind: Literal["attack_selftest"]
    attack: AttackName = Field(
        default="pgd", description="The attack under test, as the adversarial check names it."
    )
    samples: PositiveInt = Field(
        default=100,
        description="Samples tried (the first by data set position; misclassified and invalid ones are left "
        "out of n). 100: a perfect attack passes min 0.95 at confidence 0.95, since n/n found has a "
        "Clopper-Pearson lower bound of 0.025^(1/n), which reaches 0.95 from n = 72 valid samples.",
    )
    adaptive: Literal["auto", "off"] = Field(
        default="auto",
        description="auto: test the attack as the adversarial check runs it on this model (with its "
        "adaptive escalation); off: the plain attack on the gradient model.",
    )
    min: Number | None = 0.95

    primary_metric: ClassVar[str] = "planted_found_rate"

    @model_validator(mode="after")
    def _attack_can_test_itself(self) -> AttackSelftestSpec:
        info = CATALOGUE[self.attack]
        if info.feature_space or info.min_classes > SELFTEST_CLASSES:
            why = (
                "searches a tabular feature space, not the ε-ball in the input range"
                if info.feature_space
                else f"needs at least {info.min_classes} classes, and the self-test's model has {SELFTEST_CLASSES}"
            )
            usable = ", ".join(
                name
                for name, other in CATALOGUE.items()
                if not other.feature_space and other.min_classes <= SELFTEST_CLASSES
            )
            raise field_problem("attack", f"the attack {self.attack} {why}; the self-test runs {usable}")
        return self


ALL_CHECK_SPECS: tuple[type[CheckSpec], ...] = (
    AccuracySpec,
    ExportParitySpec,
    AdversarialSpec,
    GradientMaskingSpec,
    ModelSanitySpec,
    CorruptionSpec,
    AttributionSpec,
    CertifiedSpec,
    BackgroundSpec,
    SubgroupSpec,
    CalibrationSpec,
    AttackSelftestSpec,
)

AnyCheckSpec = Annotated[
    AccuracySpec
    | ExportParitySpec
    | AdversarialSpec
    | GradientMaskingSpec
    | ModelSanitySpec
    | CorruptionSpec
    | AttributionSpec
    | CertifiedSpec
    | BackgroundSpec
    | SubgroupSpec
    | CalibrationSpec
    | AttackSelftestSpec,
    Field(discriminator="kind"),
]


def kind_of(spec_type: type[CheckSpec]) -> str:
    """The literal ``kind`` a spec class declares."""
    (kind,) = spec_type.model_fields["kind"].annotation.__args__  # type: ignore[union-attr]
    return kind
