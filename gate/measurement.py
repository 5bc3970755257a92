"""What a check hands the verdict: its measured value and the evidence an interval is built from.

Torch-free on purpose: ``gate.verdict`` and ``gate merge`` judge measurements without loading the
evaluation stack. The constructors still accept tensors, read duck-typed (anything with ``detach``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gate.errors import CheckError
from gate.stats import Interval

if TYPE_CHECKING:
    import torch

    from gate.report.model import Finding


def _as_numpy(values: np.ndarray | torch.Tensor) -> np.ndarray:
    """An array from a tensor (detached, on the CPU) or from anything numpy reads."""
    if hasattr(values, "detach"):
        return values.detach().cpu().numpy()
    return np.asarray(values)


@dataclass
class Measurement:
    """The outcome of a check before it is judged against thresholds.

    A proportion gives ``successes`` (an exact interval follows); any other metric gives ``per_sample``
    values (a bootstrap interval of the mean follows) or its own ``interval``.
    """

    value: float
    n: int
    successes: int | None = None
    per_sample: np.ndarray | None = None
    interval: Interval | None = None
    details: dict[str, Any] = field(default_factory=dict)
    artifacts: list[Path] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    message: str = ""
    violations: list[str] = field(default_factory=list)
    """Secondary thresholds the check judged itself (e.g. ``max_abs_diff``); each one fails the check."""
    incomplete: list[str] = field(default_factory=list)
    """Parts of the check that could not run (a diagnostic without a gradient model): a measurement that
    meets its thresholds with parts missing is a warning, never a pass."""

    @classmethod
    def proportion(cls, hits: np.ndarray | torch.Tensor, **extra: Any) -> Measurement:
        """A proportion measured as the mean of per-sample booleans."""
        flags = _as_numpy(hits).astype(bool).ravel()
        if flags.size == 0:
            raise CheckError("no evaluation samples: a proportion needs at least one")
        return cls(
            value=float(flags.mean()),
            n=int(flags.size),
            successes=int(flags.sum()),
            per_sample=flags.astype(np.float64),
            **extra,
        )

    @classmethod
    def mean_of(cls, values: np.ndarray | torch.Tensor, **extra: Any) -> Measurement:
        """A mean of per-sample values (interval by bootstrap)."""
        array = _as_numpy(values).astype(np.float64).ravel()
        if array.size == 0:
            raise CheckError("no evaluation samples: a mean needs at least one")
        if not np.all(np.isfinite(array)):
            bad = int((~np.isfinite(array)).sum())
            raise CheckError(f"{bad} of {array.size} per-sample values are NaN or infinite")
        return cls(value=float(array.mean()), n=int(array.size), per_sample=array, **extra)


__all__ = ["Measurement"]
