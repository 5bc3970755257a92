"""What a check kind is: a spec class from the policy format and one ``run`` method returning a measurement."""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np
import torch

from gate.errors import CheckError
from gate.measurement import Measurement
from gate.model.squashing import unit_interval_rows
from gate.policy.checks import CheckSpec

if TYPE_CHECKING:
    from gate.console import Progress
    from gate.data import EvalData
    from gate.model import ModelUnderTest
    from gate.policy import Policy
    from gate.resume import ResumeState

SpecT = TypeVar("SpecT", bound=CheckSpec)


class CheckTimeout(CheckError):
    """The check ran past its ``timeout`` (or the run's ``--timeout``)."""


@dataclass
class CheckContext:
    """Everything a check may use; checks never load files or parse options themselves."""

    policy: Policy
    model: ModelUnderTest
    data: EvalData
    device: torch.device
    seed: int
    batch_size: int
    artifacts_dir: Path
    progress: Progress
    deadline: float | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    shard: tuple[int, int] | None = None
    full_selection: np.ndarray | None = None
    """The unsharded selection of samples: diagnostics that cannot be split run on it, in shard 1 only."""
    resume: ResumeState | None = None
    check_key: str = ""
    """Identifies the running check (its spec) in the resume state."""

    def finished_batch(self, batch: str) -> dict[str, Any] | None:
        """Per-sample results of a batch an interrupted run already finished (``--resume``), if any."""
        return None if self.resume is None else self.resume.finished_batch(self.check_key, batch)

    def record_batch(self, batch: str, payload: dict[str, Any]) -> None:
        if self.resume is not None:
            self.resume.record_batch(self.check_key, batch, payload)

    def check_deadline(self) -> None:
        """Called between batches by long checks so a timeout ends them promptly."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise CheckTimeout("the check ran past its time limit")

    def diagnostic_context(self, samples: int) -> CheckContext | None:
        """A context on the first ``samples`` of the whole (unsharded) selection, for whole-set diagnostics.

        Returns None in shards other than the first: such a check runs once, and ``gate merge`` takes its
        result from shard 1, so a sharded run decides exactly as an unsharded one.
        """
        if self.shard is not None and self.shard[0] != 1:
            return None
        selection = self.full_selection if self.full_selection is not None else self.data.selected
        subset = self.data.with_selection(selection[:samples])
        return dataclasses.replace(self, data=subset, cache={})

    def artifact_path(self, check_id: str, name: str) -> Path:
        folder = self.artifacts_dir / check_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def clean_predictions(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Indices, labels and deployed-model predictions on the clean data, computed once per run.

        Shared by every check that needs them (accuracy, the attack's starting set, attributions with
        ``target: prediction``), so the data set is scored by ONNX Runtime only once.
        """
        if "clean" not in self.cache:
            indices, labels, predictions, bounded = [], [], [], []
            for batch in self.data.batches(self.batch_size, self.device):
                self.check_deadline()
                scores = self.model.scores(batch.x)
                predictions.append(scores.argmax(dim=1))
                bounded.append(unit_interval_rows(scores).all())  # read once, by outputs_are_probabilities
                indices.append(batch.index)
                labels.append(batch.y)
            if not indices:
                raise CheckError("the evaluation data selected no samples")
            self.cache["clean"] = (torch.cat(indices), torch.cat(labels), torch.cat(predictions))
            self.cache["clean_bounded"] = torch.stack(bounded).all()
        return self.cache["clean"]

    def outputs_are_probabilities(self) -> bool:
        """Whether every output of the session on the clean data lies in [0, 1]: probabilities of some kind
        (a softmax, a per-class sigmoid), whose saturation masks gradients. From the clean pass, no other."""
        self.clean_predictions()
        return bool(self.cache["clean_bounded"])


def deferred_to_first_shard(context: CheckContext) -> Measurement:
    """The placeholder of a whole-set diagnostic in shards 2..N; ``gate merge`` replaces it with shard 1's."""
    assert context.shard is not None  # only diagnostic_context() returning None leads here
    return Measurement(
        value=0.0,
        n=0,
        details={"deferred_to_shard": 1},
        message=f"evaluated once, in shard 1 of {context.shard[1]}; see the merged report",
    )


class CheckKind(ABC, Generic[SpecT]):
    """One check kind: the policy spec it accepts and how it measures."""

    spec_type: ClassVar[type[CheckSpec]]

    @abstractmethod
    def run(self, spec: SpecT, context: CheckContext) -> Measurement:
        """Measure the spec's primary metric on the context's model and data."""
