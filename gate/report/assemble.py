"""Report assembly: judged check results, with what was evaluated and where, become one ``Report``.

This comes after the verdict and before the formats. It stays torch-free at import time, so that
``gate merge`` (which re-assembles shard reports) and ``gate attest`` (which re-derives a summary) never
load the evaluation stack; only ``environment`` reads torch's and ONNX Runtime's versions, and only when
a run, which has loaded them already, asks.
"""

from __future__ import annotations

import datetime as dt
import platform
import time
from typing import TYPE_CHECKING

from gate import __version__
from gate.report.model import (
    CheckResult,
    DataInfo,
    Environment,
    ExportRecord,
    ModelInfo,
    PolicyInfo,
    Report,
    Summary,
    TaskInfo,
)
from gate.verdict import overall_verdict

if TYPE_CHECKING:
    import torch

    from gate.checks.base import CheckContext
    from gate.data import EvalData
    from gate.model import ModelUnderTest
    from gate.model.export import ExportInfo
    from gate.policy import ResolvedPolicy
    from gate.runner import RunOptions


def assemble_report(
    options: RunOptions,
    resolved: ResolvedPolicy,
    model: ModelUnderTest,
    data: EvalData,
    context: CheckContext,
    results: list[CheckResult],
    timings: dict[str, float],
    started_at: dt.datetime,
    start: float,
) -> Report:
    """Everything the run decided, with the digests and versions an auditor needs."""
    from gate.model.spec import own_weights_note

    verdict, exit_code = overall_verdict(results)
    policy = resolved.policy
    return Report(
        verdict=verdict,
        exit_code=exit_code,
        message=verdict_message(verdict, results),
        policy=PolicyInfo(
            name=policy.name, files=[str(f.path) for f in resolved.files], sha256=resolved.sha256
        ),
        model=ModelInfo(
            source=options.model.source,
            sha256=model.onnx_sha256,
            onnx_path=str(model.onnx_path),
            provider=model.provider,
            source_kind=model.source_kind,
            gradients=gradients_note(model),
            export=export_record(model.export_info),
            notes=[
                note
                for note in (own_weights_note(options.model), getattr(model, "output_note", None))
                if note
            ],
        ),
        data=DataInfo(
            source=options.data,
            sha256=data.sha256,
            n=len(data),
            shard=f"{options.shard[0]}/{options.shard[1]}" if options.shard else None,
            notes=list(data.notes),
        ),
        task=TaskInfo(
            name=context.task.name,
            source="policy" if policy.task is not None else "inferred",
            inputs=context.task.inputs,
        ),
        environment=environment(context.device, model.provider),
        seed=context.seed,
        confidence=policy.confidence,
        started_at=started_at,
        duration_s=time.monotonic() - start,
        timings=timings,
        summary=summarise(results),
        checks=results,
        stale_waivers=waivers_in_state(results, "stale"),
        expired_waivers=waivers_in_state(results, "expired"),
        resolved_policy=policy.model_dump(mode="json"),
        resumed_entries=context.resume.resumed if context.resume is not None else 0,
    )


def export_record(info: ExportInfo | None) -> ExportRecord | None:
    """The export's facts for the report (None for an ONNX model, which gate does not export)."""
    if info is None:
        return None
    return ExportRecord(
        exporter=info.exporter,
        opset=info.opset,
        seconds=round(info.seconds, 3),
        cached=info.cached,
        note=info.note,
    )


def gradients_note(model: ModelUnderTest) -> str | None:
    """Where the gradients come from, or why there are none; for an ONNX-only model, the inputs on which
    its twin was last found to agree with the session (``gate check``: the first evaluation batch)."""
    if model.gradient_model is None:
        return model.gradient_unavailable_reason
    if model.twin_agreement is not None:
        return f"available: the ONNX twin, which agrees with the session on {model.twin_agreement}"
    return "available"


def waivers_in_state(results: list[CheckResult], state: str) -> list[str]:
    """Ids of the checks whose waiver is ``stale`` or ``expired``, for the report's reminders."""
    return [r.id for r in results if r.waiver is not None and r.waiver.state == state]


def summarise(results: list[CheckResult]) -> Summary:
    """How many checks ended in each status; ``gate attest`` recomputes it to detect an edited report."""
    counts = {
        status: sum(r.status == status for r in results)
        for status in ("pass", "fail", "warn", "waived", "error")
    }
    return Summary(
        passed=counts["pass"],
        failed=counts["fail"],
        warned=counts["warn"],
        waived=counts["waived"],
        errored=counts["error"],
    )


def verdict_message(verdict: str, results: list[CheckResult]) -> str:
    """The one line a reader sees first: which checks decided the verdict."""
    if verdict == "error":
        names = ", ".join(r.id for r in results if r.status == "error")
        return f"could not complete: {names}; the gate fails closed"
    if verdict == "fail":
        names = ", ".join(r.id for r in results if r.status == "fail")
        return f"blocking checks failed: {names}"
    return "every blocking check meets the policy"


def environment(device: torch.device, provider: str | None) -> Environment:
    """The versions and the device a run used. Imports the evaluation stack, which a run has loaded."""
    import onnx
    import onnxruntime
    import torch

    name = str(device)
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    if provider:
        name += f"; onnxruntime: {provider}"
    return Environment(
        gate=__version__,
        python=platform.python_version(),
        torch=torch.__version__,
        onnx=onnx.__version__,
        onnxruntime=onnxruntime.__version__,
        platform=platform.platform(),
        device=name,
    )


__all__ = ["assemble_report", "environment", "summarise", "verdict_message", "waivers_in_state"]
