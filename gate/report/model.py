"""The report format: pydantic models that are the single source of truth for report.json and its schema."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

REPORT_SCHEMA_VERSION = 1

Status = Literal["pass", "fail", "warn", "waived", "error"]
Verdict = Literal["pass", "fail", "error"]


def plain_data(value: Any) -> Any:
    """Free-form check data as plain Python: numpy/torch scalars and arrays become numbers and lists.

    pydantic cannot serialise a numpy.int64, so one such value in a check's details used to make the
    whole report fail to render at the end of a run.
    """
    if isinstance(value, dict):
        return {key if isinstance(key, str) else str(key): plain_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_data(item) for item in value]
    if value is None or isinstance(value, str | bytes | bool | int | float):
        return value
    tolist = getattr(value, "tolist", None)
    return plain_data(tolist()) if callable(tolist) else value


PlainData = Annotated[dict[str, Any], BeforeValidator(plain_data)]


class ReportModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntervalModel(ReportModel):
    lower: float
    upper: float
    confidence: float
    method: str


class ThresholdModel(ReportModel):
    min: float | None = None
    max: float | None = None
    max_drop: float | None = None


class WaiverState(ReportModel):
    """A waiver as applied in this run: ``active``, ``expired`` (no longer applies) or ``stale`` (not needed)."""

    reason: str
    approved_by: str
    expires: dt.date
    state: Literal["active", "expired", "stale"]


class Finding(ReportModel):
    """A named diagnostic with the numbers behind it (e.g. a gradient-masking indicator)."""

    code: str
    message: str
    data: PlainData = Field(default_factory=dict)


class Regression(ReportModel):
    """Comparison with the same check in a baseline report (``--baseline``)."""

    baseline_value: float
    difference: float = Field(description="current - baseline, in the metric's units.")
    drop_lower_bound: float | None = Field(
        default=None,
        description="One-sided lower confidence bound of the drop (worsening); null without intervals.",
    )
    max_drop: float
    regressed: bool


class Location(ReportModel):
    """Where the check is written in the policy files (for annotations and SARIF)."""

    path: str
    line: int | None = None
    column: int | None = None


class SampleRecord(ReportModel):
    """Per-sample values behind a check's metric, kept in sharded runs so ``gate merge`` can recombine them."""

    index: list[int] = Field(description="Data set positions of the samples, ascending.")
    values: list[float] = Field(description="The per-sample metric (1/0 for proportions).")
    proportion: bool


class CheckResult(ReportModel):
    id: str
    kind: str
    description: str | None = None
    status: Status
    severity: Literal["block", "warn"]
    metric: str
    value: float | None = None
    interval: IntervalModel | None = None
    n: int = 0
    successes: int | None = Field(
        default=None, description="For proportion metrics: the count behind the value."
    )
    threshold: ThresholdModel
    waiver: WaiverState | None = None
    message: str
    samples_to_decide: int | None = Field(
        default=None, description="When the interval straddles a threshold: samples that would decide it."
    )
    regression: Regression | None = None
    findings: list[Finding] = Field(default_factory=list)
    violations: list[str] = Field(
        default_factory=list,
        description="Secondary thresholds the check judged itself and found broken (e.g. max_abs_diff); each "
        "fails the check, and gate merge carries every shard's into the merged result.",
    )
    details: PlainData = Field(default_factory=dict)
    artifacts: list[str] = Field(
        default_factory=list, description="Files written for this check, relative to the report folder."
    )
    location: Location | None = None
    duration_s: float = 0.0
    samples: SampleRecord | None = Field(default=None, description="Only in partial (sharded) reports.")


class ArtifactDigest(ReportModel):
    source: str
    sha256: str | None = None


class ExportRecord(ReportModel):
    """How a PyTorch source became the judged ONNX file."""

    exporter: str = Field(description="The exporter that wrote the file: dynamo or torchscript.")
    opset: int
    seconds: float = Field(description="How long the export took when it ran (a reused one: back then).")
    cached: str | None = Field(
        default=None, description="Where an identical earlier export was reused from; null if exported now."
    )
    note: str | None = Field(default=None, description="Why the exporter differs from the one asked for.")


class ModelInfo(ArtifactDigest):
    onnx_path: str | None = None
    export: ExportRecord | None = Field(default=None, description="Only for PyTorch sources.")
    provider: str | None = None
    source_kind: str | None = None
    gradients: str | None = Field(
        default=None, description="Where gradients come from, or why there are none."
    )
    notes: list[str] = Field(
        default_factory=list,
        description="What a reader of the verdict should know about the model (a factory judged with its own weights).",
    )


class DataInfo(ArtifactDigest):
    n: int = 0
    shard: str | None = None
    notes: list[str] = Field(
        default_factory=list,
        description="What gate did to the data on the way in (image modes converted, npz members ignored).",
    )


class PolicyInfo(ReportModel):
    name: str
    files: list[str]
    sha256: str


class TaskInfo(ReportModel):
    """The kind of model judged (it decides which checks apply) and how gate knew it."""

    name: str = Field(description="image_classification or tabular_classification.")
    source: Literal["policy", "inferred"] = Field(
        description="policy: named by the policy's task; inferred: from the data's shape."
    )
    inputs: str = Field(description="The inputs the task takes, e.g. features [N, F].")


class Environment(ReportModel):
    gate: str
    python: str
    torch: str
    onnx: str
    onnxruntime: str
    platform: str
    device: str


class Summary(ReportModel):
    passed: int = 0
    failed: int = 0
    warned: int = 0
    waived: int = 0
    errored: int = 0


class Report(ReportModel):
    """Everything a run decided and why; enough to audit the decision later."""

    schema_version: int = REPORT_SCHEMA_VERSION
    verdict: Verdict
    exit_code: int
    message: str = ""
    policy: PolicyInfo
    model: ModelInfo
    data: DataInfo
    task: TaskInfo | None = Field(default=None, description="Absent in reports of gate before tasks.")
    environment: Environment
    seed: int
    confidence: float | None
    started_at: dt.datetime
    duration_s: float
    timings: dict[str, float] = Field(default_factory=dict)
    summary: Summary
    checks: list[CheckResult]
    stale_waivers: list[str] = Field(default_factory=list)
    expired_waivers: list[str] = Field(default_factory=list)
    resumed_entries: int = Field(
        default=0, description="Checks and attacked batches reused from an interrupted run (--resume)."
    )
    resolved_policy: dict[str, Any] | None = Field(
        default=None,
        description="The policy as evaluated (after extends), so merges and audits need no files.",
    )
