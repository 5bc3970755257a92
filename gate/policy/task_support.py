"""Which checks a task can evaluate: the validator's rule, read from the tasks and the catalogues.

A check, attack or corruption that the task cannot run is refused with its file and line when the policy
is read (``gate policy validate``), never discovered half way through a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gate.attacks.catalogue import CATALOGUE
from gate.policy.specs import (
    ATTRIBUTION_METHOD_INPUTS,
    ATTRIBUTION_METRICS,
    CORRUPTION_INPUTS,
    AttributionSpec,
    CheckSpec,
    CorruptionSpec,
)
from gate.tasks import TASKS, Task
from gate.tasks.base import INPUT_LAYOUTS, InputKind

if TYPE_CHECKING:
    from gate.policy.loader import Problem, ResolvedPolicy


def spec_problems(spec: CheckSpec, task: Task) -> list[tuple[str, str]]:
    """``(field, message)`` for each part of ``spec`` that ``task`` cannot evaluate."""
    refusal = task.refusal(spec.kind)
    if refusal is not None:
        return [("kind", refusal)]
    problems = []
    attack = getattr(spec, "attack", None)
    if attack is not None and task.name not in CATALOGUE[attack].tasks:
        usable = ", ".join(name for name, info in CATALOGUE.items() if task.name in info.tasks)
        problems.append(
            (
                "attack",
                f"the attack {attack!r} does not support the task {task.name} (it supports "
                f"{', '.join(CATALOGUE[attack].tasks)}); attacks for {task.name}: {usable}",
            )
        )
    if isinstance(spec, CorruptionSpec) and task.input_kind not in CORRUPTION_INPUTS[spec.corruption]:
        usable = ", ".join(name for name, kinds in CORRUPTION_INPUTS.items() if task.input_kind in kinds)
        problems.append(
            (
                "corruption",
                f"the corruption {spec.corruption!r} needs images [N, C, H, W]; the task {task.name} "
                f"takes {task.inputs} (corruptions for it: {usable})",
            )
        )
    if isinstance(spec, AttributionSpec):
        problems += attribution_problems(spec, task)
    return problems


def attribution_problems(spec: AttributionSpec, task: Task) -> list[tuple[str, str]]:
    """``(field, message)`` for the attribution method, metric and settings that ``task``'s inputs lack."""
    tables: dict[str, dict[str, tuple[InputKind, ...]]] = {
        "method": ATTRIBUTION_METHOD_INPUTS,
        "metric": {name: info.inputs for name, info in ATTRIBUTION_METRICS.items()},
    }
    problems = []
    for field, table in tables.items():
        name = getattr(spec, field)
        if task.input_kind in table[name]:
            continue
        needs = " or ".join(INPUT_LAYOUTS[kind][1] for kind in table[name])
        usable = ", ".join(other for other, kinds in table.items() if task.input_kind in kinds)
        problems.append(
            (
                field,
                f"the attribution {field} {name!r} needs {needs}; the task {task.name} takes {task.inputs} "
                f"({field}s for it: {usable})",
            )
        )
    for field, why in spec.settings_outside(task.input_kind):
        value = getattr(spec, field)
        problems.append(
            (field, f"{field}: {value} has no meaning for the task {task.name} ({task.inputs}): {why}")
        )
    return problems


def task_problems(resolved: ResolvedPolicy, task: Task) -> list[Problem]:
    """Every check of the resolved policy that ``task`` cannot evaluate, located in its file."""
    from gate.policy.loader import Problem

    problems = []
    for spec in resolved.policy.checks:
        for field, message in spec_problems(spec, task):
            path, position, where = resolved.check_field_location(spec.id, field)
            problems.append(Problem(path, position, where, message))
    return problems


def undecided_task_problems(resolved: ResolvedPolicy) -> list[Problem]:
    """For a policy without ``task``: each check must suit the task the data will imply, so refuse now
    only what no task supports; the run checks the rest against the task it infers."""
    from gate.policy.loader import Problem

    problems = []
    for spec in resolved.policy.checks:
        per_task = [spec_problems(spec, task) for task in TASKS.values()]
        if all(per_task):
            for field, message in per_task[0]:
                path, position, where = resolved.check_field_location(spec.id, field)
                problems.append(Problem(path, position, where, f"{message} (and no task supports it)"))
    return problems


__all__ = ["attribution_problems", "spec_problems", "task_problems", "undecided_task_problems"]
