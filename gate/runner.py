"""One gate run: load policy, data and model, run every check (fail closed), judge, assemble the report.

The CLI calls ``run_gate``; everything here is library code that raises typed errors and never prints.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from gate.checks import REGISTRY, CheckContext, CheckTimeout
from gate.console import Progress
from gate.errors import EXIT_ERROR, CheckError, DataError, GateError, ModelError, RunTimeout, UsageError
from gate.measurement import Measurement
from gate.model.batch_size import choose_batch_size
from gate.model.spec import own_weights_note, source_kind
from gate.policy import CheckSpec, PolicyValidationError, ResolvedPolicy, load_policy
from gate.policy.feature_support import feature_problems
from gate.policy.specs import SubgroupSpec
from gate.policy.task_support import task_problems
from gate.report import load_baseline
from gate.report.assemble import assemble_report
from gate.report.folder import prepare_report_folder
from gate.report.model import (
    CheckResult,
    Location,
    Report,
    SampleRecord,
)
from gate.resume import STATE_FILE, fingerprint_run, open_resume_state
from gate.tasks import TASKS, Task, infer_task
from gate.verdict import JudgeSettings, error_result, judge

if TYPE_CHECKING:
    import numpy as np

    from gate.attacks.feature_space import FeatureSpace
    from gate.data import EvalData
    from gate.model import ModelSpec, ModelUnderTest
    from gate.policy.model import Policy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """What to evaluate and how; mirrors ``gate check``'s options."""

    policy: str
    model: ModelSpec
    data: str
    report_dir: Path
    samples: int | None = None
    seed: int | None = None
    baseline: Path | None = None
    timeout: float | None = None
    batch_size: int | str = "auto"
    """An integer, or ``auto``: the largest that fits the device (``gate.model.batch_size.choose_batch_size``)."""
    shard: tuple[int, int] | None = None
    today: dt.date | None = None
    progress: Progress = field(default_factory=lambda: Progress(enabled=False))
    resume: bool = False
    policy_roots: tuple[Path, ...] = ()
    """Folders besides the policy's repository that ``extends`` may read (``--policy-root``)."""
    exit_when_stuck: bool = False
    """With ``timeout``: end the process (exit 3) if the run is still going a grace period after its
    deadline, i.e. stuck in native code that no Python-level timer can interrupt. For the CLI only."""
    export_cache: Path | None = None
    """A folder of exports shared across report folders (``--export-cache``; ``GATE_EXPORT_CACHE``)."""


def resolve_device(requested: str) -> torch.device:
    """``auto`` is CUDA when torch can really use it; asking for ``cuda`` without it is an error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was requested but torch sees no usable CUDA device")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def run_gate(options: RunOptions) -> Report:
    """Evaluate a model against a policy; raises GateError (exit 2) when nothing can be evaluated."""
    started_at, start = dt.datetime.now(dt.timezone.utc), time.monotonic()
    run_deadline = start + options.timeout if options.timeout else None
    stuck = run_deadline is not None and options.exit_when_stuck
    with _exit_when_stuck(run_deadline, options.timeout or 0.0) if stuck else nullcontext():
        return _run(options, started_at, start, run_deadline)


def _run(options: RunOptions, started_at: dt.datetime, start: float, run_deadline: float | None) -> Report:
    from gate.data import load_data, select_indices
    from gate.model import load_model

    timings: dict[str, float] = {}
    # Before anything can fail: an earlier run's verdict must not stand beside this run's exit code.
    prepare_report_folder(options.report_dir, state_file=STATE_FILE, resume=options.resume)
    resolved = load_policy(options.policy, policy_roots=options.policy_roots)
    policy = resolved.policy
    if policy.require_weights and own_weights_note(options.model):
        raise UsageError(
            f"the policy requires weights (require_weights), but the factory {options.model.source!r} was given "
            "without --weights: it would be judged with the weights it builds itself",
            hint="pass --weights FILE (.safetensors or a state dict)",
        )
    seed = options.seed if options.seed is not None else policy.seed
    samples = options.samples if options.samples is not None else policy.samples
    baseline = load_baseline(options.baseline) if options.baseline else {}
    device = resolve_device(options.model.device)

    tick = time.monotonic()
    with _loading(run_deadline, DataError, "the evaluation data's code", options.data):
        features = policy.features
        data = load_data(
            options.data,
            # A features section gives each feature its own range, judged once the space is built.
            input_range=None if features is not None else policy.input.range,
            label_column=None if features is None else features.label,
            samples=samples,
            seed=seed,
            shard=options.shard,
            input_shape=options.model.input_shape,
        )
        first = next(data.batches(1, "cpu"), None)
    timings["load_data"] = time.monotonic() - tick
    if first is None:
        raise DataError("the evaluation data selected no samples", path=options.data)
    task = task_for(resolved, data.sample_shape, options.data)
    _check_data_carries_what_checks_need(policy, data)
    space = feature_space_for(resolved, task, data, options.data)
    tick = time.monotonic()
    with _loading(run_deadline, ModelError, "the model's code", options.model.source):
        # Said before it starts: an export of a large network takes minutes (unless cached).
        with options.progress.task(_loading_label(options.model), 1) as progress:
            model = load_model(
                options.model,
                work_dir=options.report_dir / "model",
                example_input=first.x,
                export_cache=options.export_cache,
            )
            progress.advance()
        timings["load_model"] = time.monotonic() - tick
        _check_targets(task, data, model.num_classes, options.data)
        full_selection = select_indices(data.n_total, samples=samples, seed=seed, shard=None)
        batch_size = choose_batch_size(
            options.batch_size, model, device, data.sample_shape, len(full_selection)
        )
    model.batch_size = batch_size
    timings["batch_size"] = float(batch_size)
    with _loading(run_deadline, ModelError, "the model's code", options.model.source):
        _verify_twin(model, data, full_selection[:batch_size], device)

    fingerprint = fingerprint_run(
        options, resolved, model=model, data=data, seed=seed, samples=samples, batch_size=batch_size,
        device=device,
    )  # fmt: skip
    resume = open_resume_state(options, fingerprint)
    context = CheckContext(
        policy=policy,
        task=task,
        model=model,
        data=data,
        device=device,
        seed=seed,
        batch_size=batch_size,
        artifacts_dir=options.report_dir / "artifacts",
        progress=options.progress,
        shard=options.shard,
        full_selection=full_selection,
        resume=resume,
        features=space,
    )
    settings = JudgeSettings(
        confidence=policy.confidence,
        today=options.today or dt.date.today(),
        seed=seed,
        baseline_given=options.baseline is not None,
    )
    results = []
    for index, spec in enumerate(policy.checks, start=1):
        options.progress.step(index, len(policy.checks), f"{spec.id} ({spec.kind})")
        results.append(_run_check(spec, context, settings, resolved, baseline.get(spec.id), run_deadline))
    for result in results:
        timings[f"check:{result.id}"] = result.duration_s
    return assemble_report(options, resolved, model, data, context, results, timings, started_at, start)


def _check_data_carries_what_checks_need(policy: Policy, data: EvalData) -> None:
    """Refuse, before the model loads, a check whose data requirement the data does not meet."""
    from gate.checks.subgroup import require_groups

    for spec in policy.checks:
        if isinstance(spec, SubgroupSpec):
            require_groups(spec, data)


def _loading_label(spec: ModelSpec) -> str:
    if source_kind(spec) == "onnx":
        return "loading the ONNX model"
    return "loading the model and exporting it to ONNX (or reusing an identical export)"


def task_for(resolved: ResolvedPolicy, sample_shape: tuple[int, ...], source: str) -> Task:
    """The policy's task, or the one the data's shape implies; either way, one that fits the data and
    supports every check of the policy (refused with the checks' lines before the model loads)."""
    name = resolved.policy.task
    if name is not None:
        task = TASKS[name]
        problem = task.input_problem(sample_shape)
        if problem is not None:
            raise DataError(problem, path=source, hint="give data of that shape, or change the policy's task")
        return task
    task = infer_task(sample_shape, source)
    problems = task_problems(resolved, task)
    if problems:
        inferred = f" (the policy names no task; the data's shape implies {task.name}: name it with task:)"
        raise PolicyValidationError(
            [dataclasses.replace(problem, message=problem.message + inferred) for problem in problems]
        )
    return task


def feature_space_for(
    resolved: ResolvedPolicy, task: Task, data: EvalData, source: str
) -> FeatureSpace | None:
    """The feature space of tabular data under the policy's ``features`` section (None for images).

    The schema must fit the data: a feature it names that the data lacks, a declared range the data
    exceeds, or an evaluation sample that itself breaks a type, a one-hot group or a constraint is a
    DataError (exit 2) naming the sample, before the model loads: a schema that refuses real inputs would
    make every feasibility verdict wrong.
    """
    from gate.attacks.feature_space import build_feature_space, clean_violations

    policy = resolved.policy
    if task.input_kind != "features":
        if policy.features is not None:
            raise PolicyValidationError(feature_problems(resolved, task))
        return None
    stats, names = data.feature_stats, data.feature_names
    if stats is None or names is None:
        raise DataError("tabular data came without per-feature statistics", path=source)
    space = build_feature_space(
        policy.features, names, low=stats.low, high=stats.high, std=stats.std, median=stats.median,
        input_range=None if policy.features is not None else policy.input.range, source=source,
    )  # fmt: skip
    if policy.features is None:
        return space
    for batch in data.batches(4096, "cpu"):
        bad = (clean_violations(space, batch.x) != 0).nonzero().squeeze(1)
        if bad.numel():
            row = int(bad[0])
            problem = space.first_violation(batch.x[row], batch.x[row])
            raise DataError(
                f"sample {int(batch.index[row])} of the evaluation data breaks the policy's features section: "
                f"{problem} ({bad.numel()} sample(s) in its batch of {len(batch)} do)",
                path=source,
                hint="fix the schema (ranges, types, constraints) or the data: the schema must hold for real inputs",
            )
    return space


def _check_targets(task: Task, data: EvalData, outputs: int, source: str) -> None:
    """Targets must be judgeable against the model's outputs; otherwise every accuracy would be meaningless."""
    problem = task.target_problem(int(data.labels().max()), outputs)
    if problem is not None:
        raise DataError(problem, path=source)


def _verify_twin(model: ModelUnderTest, data: EvalData, selection: np.ndarray, device: torch.device) -> None:
    """Compare an ONNX-only model's twin with the session on the first batch the run evaluates, before
    any check takes gradients from it: loading compared them on the example input only.

    The batch starts the whole, unsharded selection, so every shard of a run keeps or withdraws the twin
    alike. A twin that disagrees is withdrawn (``model.gradients`` in the report says by how much); a
    session that fails on the batch is left to the checks, which meet the same failure and report it.
    """
    if model.source_kind != "onnx" or model.gradient_model is None:
        return
    batch = next(data.with_selection(selection).batches(len(selection), device))
    try:
        model.verify_twin(batch.x, on=f"the first evaluation batch ({len(batch)} samples)")
    except ModelError as error:
        logger.debug("the twin was not compared on the first batch: %s", error.message)


def _run_check(
    spec: CheckSpec,
    context: CheckContext,
    settings: JudgeSettings,
    resolved: ResolvedPolicy,
    baseline: CheckResult | None,
    run_deadline: float | None,
) -> CheckResult:
    """Run one check; any exception, NaN, timeout or out-of-memory becomes an ``error`` result."""
    start = time.monotonic()
    context.check_key = spec.model_dump_json()
    if context.resume is not None and (finished := context.resume.finished_check(context.check_key)):
        return CheckResult.model_validate(finished)
    limits = [d for d in (run_deadline, start + spec.timeout if spec.timeout else None) if d is not None]
    context.deadline = min(limits) if limits else None
    waiver = resolved.policy.waiver_for(spec.id)
    try:
        with _hard_deadline(context.deadline):
            measurement = REGISTRY[spec.kind].run(spec, context)
        result = judge(spec, measurement, settings, waiver=waiver, baseline=baseline)
        artifacts = [_relative(path, context.artifacts_dir.parent) for path in measurement.artifacts]
        result = result.model_copy(
            update={"artifacts": artifacts, "samples": _sample_record(measurement, context)}
        )
    except CheckTimeout:
        limit = spec.timeout if spec.timeout else "the run's --timeout"
        result = error_result(
            spec, f"timed out after {time.monotonic() - start:.1f} s (limit: {limit})", waiver, settings
        )
    except (torch.OutOfMemoryError, MemoryError) as exc:
        result = error_result(
            spec, f"ran out of memory ({type(exc).__name__}); lower --batch-size", waiver, settings
        )
    except GateError as exc:  # with the file it names (a data file that changed after loading, say)
        message = f"{exc.path}: {exc.message}" if exc.path else exc.message
        result = error_result(spec, message, waiver, settings)
    except Exception as exc:  # fail closed: an unexpected failure is an error result, never a pass
        logger.debug("check %s raised:\n%s", spec.id, traceback.format_exc())
        result = error_result(spec, f"{type(exc).__name__}: {exc}", waiver, settings)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # sys.exit() or another BaseException from the model's or data's code
        result = error_result(
            spec, _exited(exc, "the model's or data's code, during the check"), waiver, settings
        )
    finally:
        context.deadline = None
    origin = resolved.check_origins.get(spec.id)
    location = None
    if origin is not None:
        position = origin.position
        location = Location(
            path=str(origin.path),
            line=position.line if position else None,
            column=position.column if position else None,
        )
    result = result.model_copy(update={"duration_s": time.monotonic() - start, "location": location})
    if context.resume is not None and result.status != "error":
        context.resume.record_check(context.check_key, result.model_dump(mode="json"))
    return result


def _exited(exc: BaseException, who: str) -> str:
    """What a ``SystemExit`` (or another non-``Exception``) from user code means for the reader."""
    if isinstance(exc, SystemExit):
        return f"{who} called sys.exit({exc.code!r}); an exit from a model or data set never passes"
    return f"{who} raised {type(exc).__name__}: {exc}"


@contextmanager
def _loading(deadline: float | None, error: type[GateError], who: str, source: str) -> Iterator[None]:
    """Loading runs user code (factories, data functions, Dataset items, forward): an exit from it is that
    input's error (exit 2), never a silent exit 0, and the run's ``--timeout`` covers it too (exit 3)."""
    try:
        with _hard_deadline(deadline, _LoadingTimeout):
            yield
    except _LoadingTimeout:
        raise RunTimeout(
            f"the run's --timeout passed while loading ({who} had not returned)", path=source
        ) from None
    except (Exception, KeyboardInterrupt):
        raise
    except BaseException as exc:
        raise error(_exited(exc, who), path=source) from None


@contextmanager
def _exit_when_stuck(deadline: float | None, timeout: float) -> Iterator[None]:
    """A last resort for native code that never returns to Python (an ONNX ``Loop``, a C extension): while
    the run lasts, a daemon thread ends the process with exit 3 a grace period after the deadline. The
    report folder was cleared at the start, so nothing says "pass"."""
    grace = 5.0 + 0.1 * timeout
    finished = threading.Event()

    def watch() -> None:
        if finished.wait(max((deadline or 0.0) + grace - time.monotonic(), 0.0)):
            return
        sys.stderr.write(
            f"gate: error: the run's --timeout of {timeout:g} s passed {grace:g} s ago and the run is stuck in a call "
            "that cannot be interrupted (native code); exiting, the gate fails closed\n"
        )
        sys.stderr.flush()
        os._exit(EXIT_ERROR)

    threading.Thread(target=watch, name="gate-timeout-watchdog", daemon=True).start()
    try:
        yield
    finally:
        finished.set()


def _sample_record(measurement: Measurement, context: CheckContext) -> SampleRecord | None:
    """Per-sample values for ``gate merge``: only in sharded runs, only when they align with the data."""
    values = measurement.per_sample
    if context.shard is None or values is None or len(values) != len(context.data):
        return None
    return SampleRecord(
        index=[int(i) for i in context.data.selected],
        values=[float(v) for v in values],
        proportion=measurement.successes is not None,
    )


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


class _LoadingTimeout(BaseException):
    """The run's deadline passed while loading. A ``BaseException``, so that the loaders' own
    ``except Exception`` (which turns a factory's failure into a ModelError, exit 2) cannot catch it."""


@contextmanager
def _hard_deadline(deadline: float | None, timeout: type[BaseException] = CheckTimeout) -> Iterator[None]:
    """Interrupt a check (or loading) stuck inside one long call: a timer signal raises ``timeout``
    (main thread on POSIX only).

    Checks also poll ``check_deadline`` between batches; this catches work that never returns to them.
    """
    usable = (
        deadline is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise timeout("the check ran past its time limit")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.001))  # type: ignore[operator]
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


__all__ = ["CheckError", "RunOptions", "resolve_device", "run_gate"]
