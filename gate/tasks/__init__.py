"""The tasks gate can judge, by the name a policy gives (``task:``); one module per family of tasks.

A new model type (detection, segmentation, text) is a new module here plus the specs and attacks it
supports; docs/tasks.md describes how it plugs in.
"""

from __future__ import annotations

from typing import Literal

from gate.errors import DataError
from gate.tasks.base import INPUT_LAYOUTS, InputKind, Task
from gate.tasks.classification import IMAGE_CLASSIFICATION, TABULAR_CLASSIFICATION, ClassificationTask

TASKS: dict[str, Task] = {task.name: task for task in (IMAGE_CLASSIFICATION, TABULAR_CLASSIFICATION)}

TaskName = Literal[tuple(TASKS)]  # type: ignore[valid-type]


def infer_task(sample_shape: tuple[int, ...], source: str) -> Task:
    """The task the data's samples imply, for a policy that names none: images or feature vectors."""
    for task in TASKS.values():
        if task.input_problem(sample_shape) is None:
            return task
    kinds = " or ".join(described for _, described in INPUT_LAYOUTS.values())
    shape = "[N, " + ", ".join(str(size) for size in sample_shape) + "]"
    raise DataError(
        f"the data's samples make batches {shape}; gate's tasks take {kinds}",
        path=source,
        hint="reshape the inputs, or name the task in the policy (task: …)",
    )


__all__ = [
    "TASKS",
    "ClassificationTask",
    "InputKind",
    "Task",
    "TaskName",
    "infer_task",
]
