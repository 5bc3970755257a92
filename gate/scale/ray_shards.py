"""``gate check --ray ADDRESS``: the N shards of one run as Ray tasks, merged into the final report.

Each task runs ``gate check --shard K/N`` in-process and writes its partial report folder to
``REPORT_DIR/shard-K/``; the driver then merges them with ``gate.merge.merge_reports``, so the verdict,
reports and exit code are those of an unsharded run. Paths are made absolute and the driver's working
directory is passed along: on a multi-node cluster the model, data and report folder must be on a file
system every node sees.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from gate.errors import GateError, UsageError
from gate.report import load_baseline
from gate.report.model import Report
from gate.runner import RunOptions

SHARD_FOLDER = "shard-{}"


class GateErrorFromShard(GateError):
    """A shard could not be evaluated; carries that shard's message and exit code."""

    def __init__(self, rendered: str, exit_code: int) -> None:
        super().__init__(rendered)
        self.exit_code = exit_code


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--ray needs Ray, which is not installed",
            hint='pip install "gate-ml[ray]" (or pip install "ray[default]>=2.9")',
        ) from None
    return ray


def _absolute(value: str | None) -> str | None:
    """A path that exists here, made absolute (workers may start elsewhere); other values unchanged."""
    if value is None or not Path(value).exists():
        return value
    return str(Path(value).resolve())


def shard_options(options: RunOptions, index: int, total: int) -> dict[str, Any]:
    """The options of shard ``index`` of ``total`` (its own folder under the report dir), as picklable fields.

    The progress display stays behind: it holds the driver's terminal, and shards run quietly.
    """
    model = options.model
    if dataclasses.is_dataclass(model):
        model = dataclasses.replace(
            model,  # type: ignore[type-var]
            source=_absolute(model.source),  # type: ignore[attr-defined]
            weights=Path(_absolute(str(model.weights))) if model.weights else None,  # type: ignore[attr-defined]
        )
    fields = {field.name: getattr(options, field.name) for field in dataclasses.fields(options)}
    del fields["progress"]
    fields.update(
        policy=_absolute(options.policy) or options.policy,
        model=model,
        data=_absolute(options.data) or options.data,
        report_dir=(options.report_dir / SHARD_FOLDER.format(index)).resolve(),
        baseline=None,  # judged once, at the merge
        shard=(index, total),
        policy_roots=tuple(Path(root).resolve() for root in options.policy_roots),
        exit_when_stuck=False,  # a Ray worker is not the process to end; the driver's timeout applies
    )
    return fields


def run_shard(fields: dict[str, Any], working_dir: str) -> dict[str, Any]:
    """One shard, as a Ray task runs it: evaluate, write the partial reports, report how it ended.

    A ``GateError`` (bad policy, model or data) comes back as a value, so the driver can raise it with its
    own message and exit code instead of Ray's wrapped traceback.
    """
    from gate.report import write_reports
    from gate.runner import run_gate

    if Path(working_dir).is_dir():  # factories such as mypackage.models:net import from there
        os.chdir(working_dir)
        if working_dir not in sys.path:
            sys.path.insert(0, working_dir)
    options = RunOptions(**fields)
    try:
        report = run_gate(options)
    except GateError as error:
        return {"error": error.render(), "exit_code": error.exit_code}
    write_reports(report, options.report_dir)
    return {"folder": str(options.report_dir), "exit_code": report.exit_code}


def default_shards(resources: dict[str, float], device: str) -> int:
    """One shard per GPU of the cluster (unless the run is on CPU), else one per CPU."""
    gpus = int(resources.get("GPU", 0)) if device != "cpu" else 0
    return max(1, gpus or int(resources.get("CPU", 1)))


def run_on_ray(options: RunOptions, *, address: str, shards: int | None = None) -> Report:
    """Run ``options`` as ``shards`` Ray tasks and merge them; connects with ``ray.init(address=...)``.

    Args:
        options: the run, as for ``run_gate`` (without ``shard``).
        address: a Ray cluster address (``ray://host:10001``, ``auto``), or ``local`` for a new local instance.
        shards: how many shards; default: the cluster's GPUs, or its CPUs when it has none.

    Returns:
        The merged report (also its shards' folders under ``options.report_dir``).
    """
    from gate.merge import merge_reports

    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, log_to_driver=False)
    try:
        resources = ray.cluster_resources()
        device = getattr(options.model, "device", "auto")
        total = shards or default_shards(resources, device)
        gpus = 1 if device != "cpu" and resources.get("GPU", 0) >= 1 else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus)(run_shard)
        pending = [
            task.remote(shard_options(options, index, total), os.getcwd()) for index in range(1, total + 1)
        ]
        outcomes = ray.get(pending)
    finally:
        if started_here:
            ray.shutdown()
    failures = [outcome for outcome in outcomes if "error" in outcome]
    if failures:
        raise GateErrorFromShard(failures[0]["error"], failures[0]["exit_code"])
    baseline = load_baseline(options.baseline) if options.baseline else None
    return merge_reports(
        [Path(outcome["folder"]) for outcome in outcomes],
        options.report_dir,
        today=options.today,
        baseline=baseline,
    )
