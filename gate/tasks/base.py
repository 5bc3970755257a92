"""What a task is: the kind of inputs a model takes, what its output and a target are, what "correct" means.

A task is the seam where a new model type plugs in (HF ``evaluate``'s evaluator-per-task shape): the
checks ask the task how to read predictions and judge them, the policy validator asks it which check
kinds, attacks and corruptions apply. Everything a policy needs is torch-free; the prediction methods
only call methods of the tensors they are given.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

InputKind = Literal["images", "features"]

INPUT_LAYOUTS: dict[InputKind, tuple[int, str]] = {
    "images": (3, "images [N, C, H, W]"),
    "features": (1, "features [N, F]"),
}
"""The sample rank (without the batch dimension) and the reader's description of each input kind."""


@dataclass(frozen=True)
class Task(ABC):
    """One kind of model gate can judge.

    Attributes:
        name: As a policy writes it (``task: tabular_classification``).
        description: One sentence for ``gate policy explain`` and the docs.
        input_kind: The inputs the model takes; attacks and corruptions say which kinds they handle.
        check_kinds: The policy's check kinds that mean something for this task.
        why_not: For a check kind the task refuses, the reason the policy author reads.
    """

    name: str
    description: str
    input_kind: InputKind
    check_kinds: frozenset[str]
    why_not: tuple[tuple[str, str], ...] = ()

    @property
    def inputs(self) -> str:
        """The inputs in words: ``images [N, C, H, W]``."""
        return INPUT_LAYOUTS[self.input_kind][1]

    def input_problem(self, sample_shape: tuple[int, ...]) -> str | None:
        """Why samples of ``sample_shape`` cannot be this task's inputs; None when they can."""
        rank, described = INPUT_LAYOUTS[self.input_kind]
        if len(sample_shape) == rank:
            return None
        shown = "[N, " + ", ".join(str(size) for size in sample_shape) + "]"
        return f"the task {self.name} takes {described}; the data's samples make batches {shown}"

    def refusal(self, kind: str) -> str | None:
        """Why the task does not support the check kind ``kind``; None when it does."""
        if kind in self.check_kinds:
            return None
        reason = dict(self.why_not).get(kind, "it has no meaning for this task")
        return f"the task {self.name} does not support check kind {kind!r}: {reason}"

    @abstractmethod
    def predict(self, scores: torch.Tensor) -> torch.Tensor:
        """The deployed model's decision for each sample, from its output scores."""

    @abstractmethod
    def correct(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-sample booleans: does each prediction meet its target?"""

    @abstractmethod
    def target_problem(self, largest_target: int, outputs: int) -> str | None:
        """Why the data's targets cannot be judged against a model with ``outputs`` outputs; None if they can."""
