"""What a check kind is: a spec class from the policy format and one ``run`` method returning a measurement."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import numpy as np
import torch

from gate.errors import CheckError
from gate.measurement import Measurement
from gate.model.squashing import unit_interval_rows
from gate.policy.specs import CheckSpec

if TYPE_CHECKING:
    from gate.attacks.feature_space import FeatureSpace
    from gate.console import Progress
    from gate.data import EvalData
    from gate.data.evaldata import Batch
    from gate.model import ModelUnderTest
    from gate.policy import Policy
    from gate.resume import ResumeState
    from gate.tasks import Task

SpecT = TypeVar("SpecT", bound=CheckSpec)
Columns = dict[str, torch.Tensor]
"""Per-sample results of a batch (or of the whole data), by name: 1-D tensors of one value per sample."""
_DTYPES = {
    "bool": torch.bool,
    "uint8": torch.uint8,
    "int32": torch.int32,
    "int64": torch.int64,
    "float32": torch.float32,
    "float64": torch.float64,
}


def batch_key(label: str, index: torch.Tensor) -> str:
    """Names a batch in the resume state by its label and exact samples (first index, count, digest)."""
    digest = hashlib.sha256(index.cpu().numpy().astype("<i8").tobytes()).hexdigest()[:16]
    return f"{label}@{int(index[0])}+{len(index)}#{digest}"


def encode_columns(columns: Columns) -> dict[str, Any]:
    """A batch's per-sample results as JSON for the resume state, with their dtypes."""
    encoded = {}
    for name, values in columns.items():
        dtype = str(values.dtype).removeprefix("torch.")
        if dtype not in _DTYPES:
            raise CheckError(
                f"per-sample result {name!r} has dtype {dtype}, which the resume state cannot hold"
            )
        encoded[name] = {"dtype": dtype, "values": values.detach().cpu().tolist()}
    return encoded


def decode_columns(payload: dict[str, Any]) -> Columns:
    """The inverse of :func:`encode_columns`: the same values and dtypes, bit for bit."""
    return {
        name: torch.tensor(column["values"], dtype=_DTYPES[column["dtype"]])
        for name, column in payload.items()
    }


def _rows_of(batch: Batch, keep: torch.Tensor) -> Batch:
    mask = None if batch.mask is None else batch.mask[keep]
    group = None if batch.group is None else batch.group[keep]
    return dataclasses.replace(
        batch, index=batch.index[keep], x=batch.x[keep], y=batch.y[keep], mask=mask, group=group
    )


class CheckTimeout(CheckError):
    """The check ran past its ``timeout`` (or the run's ``--timeout``)."""


@dataclass
class CheckContext:
    """Everything a check may use; checks never load files or parse options themselves."""

    policy: Policy
    task: Task
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
    features: FeatureSpace | None = None
    """Tabular data: the feature space every adversarial example must stay in (gate/attacks/feature_space.py)."""

    def per_sample(
        self,
        label: str,
        compute: Callable[[Batch, torch.Tensor], Columns],
        *,
        only: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> Columns:
        """Per-sample results of ``compute`` over the selected samples, in data order, on the CPU.

        The runner's batch loop, offered to every check: it polls the deadline, advances the progress
        bar, and with ``--resume`` stores each finished batch's results and hands back those an interrupted
        run already finished, so that a check only says what one batch yields (AutoAttack's ``state.py``:
        resume belongs to the orchestrator). ``compute(batch, rows)`` gets the batch, restricted to the
        samples whose data set index is in ``only``, and the rows' positions in the selection (to read
        :meth:`clean_predictions`); it returns one 1-D tensor per result, one value per sample. Batches
        without a selected sample are skipped; an empty result means none was selected.
        """
        total = len(self.data) if only is None else len(only)
        parts: dict[str, list[torch.Tensor]] = {}
        start = 0
        with self.progress.task(label, total) as progress:
            for batch in self.data.batches(self.batch_size, device if device is not None else self.device):
                self.check_deadline()
                rows = torch.arange(start, start + len(batch))
                start += len(batch)
                if only is not None:
                    keep = torch.isin(batch.index, only.to(batch.index.device))
                    if not bool(keep.any()):
                        continue
                    batch, rows = _rows_of(batch, keep), rows[keep.cpu()]
                key = batch_key(label, batch.index)
                saved = None if self.resume is None else self.resume.finished_batch(self.check_key, key)
                if saved is not None:
                    columns = decode_columns(saved)
                else:
                    columns = compute(batch, rows)
                    if self.resume is not None:
                        self.resume.record_batch(self.check_key, key, encode_columns(columns))
                for name, values in columns.items():
                    parts.setdefault(name, []).append(values.detach().cpu())
                progress.advance(len(batch))
        return {name: torch.cat(values) for name, values in parts.items()}

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

            def score_batch(batch: Batch, rows: torch.Tensor) -> Columns:
                scores = self.model.scores(batch.x)
                # ``bounded`` is read once, by outputs_are_probabilities
                return {
                    "index": batch.index,
                    "label": batch.y,
                    "prediction": self.task.predict(scores),
                    "bounded": unit_interval_rows(scores),
                }

            columns = self.per_sample("clean predictions", score_batch)
            if not columns:
                raise CheckError("the evaluation data selected no samples")
            self.cache["clean"] = (columns["index"], columns["label"], columns["prediction"])
            self.cache["clean_bounded"] = bool(columns["bounded"].all())
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
