"""Names and per-feature statistics of features data ``[N, F]``: what tabular checks know about each column."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from gate.errors import DataError

if TYPE_CHECKING:
    from gate.data.sources import Source

STATS_BLOCK_BYTES = 64 << 20
"""Memory the statistics of one block of feature columns may take (a median needs every value at once)."""
_BYTES_PER_VALUE = 20  # float32 as read, its float64 copy, and the float64 temporary of std


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Per-feature statistics over every row of a data source, not only the selected ones, so that every
    shard and every ``samples`` draw sees the same numbers. Each is a read-only float64 array ``[F]`` of
    the values as the model sees them (float32); ``std`` is the population standard deviation."""

    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    median: np.ndarray

    def __post_init__(self) -> None:
        for spec in fields(self):
            array = np.array(getattr(self, spec.name), dtype=np.float64)  # a copy: frozen means frozen
            array.setflags(write=False)
            object.__setattr__(self, spec.name, array)

    def __len__(self) -> int:
        return len(self.low)


def default_feature_names(count: int) -> tuple[str, ...]:
    """``f0`` .. ``f{count-1}``: the names of features that come without any (npz, arrays, entry points)."""
    return tuple(f"f{i}" for i in range(count))


def checked_feature_names(origin: str, names: Sequence[str], count: int) -> tuple[str, ...]:
    """``names`` as a tuple, refused unless they are ``count`` distinct non-empty strings."""
    names = tuple(names)
    if len(names) != count:
        raise DataError(
            f"expected {count} feature names (x has {count} features); found {len(names)}", path=origin
        )
    for name in names:
        if not isinstance(name, str) or not name:
            raise DataError(f"feature names must be non-empty strings; found {name!r}", path=origin)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError(f"feature names must be distinct; {repeated} repeat", path=origin)
    return names


def summarize(values: np.ndarray) -> FeatureStats:
    """The statistics of each column of ``values`` ``[N, F]`` (float64, N >= 1); ``values`` is overwritten."""
    low, high = values.min(axis=0), values.max(axis=0)
    mean, std = values.mean(axis=0), values.std(axis=0)
    median = np.median(values, axis=0, overwrite_input=True)  # last: it reorders values
    return FeatureStats(low=low, high=high, mean=mean, std=std, median=median)


def feature_stats(source: Source, *, chunk_rows: int) -> FeatureStats:
    """The statistics of every row of a features source ``[N, F]``, read ``chunk_rows`` rows at a time.

    Columns are taken in blocks of at most ``STATS_BLOCK_BYTES`` for all N rows (one pass over the data
    unless N x F is large), since an exact median needs a column's values together.
    """
    count = source.sample_shape[0]
    block_columns = max(1, STATS_BLOCK_BYTES // (_BYTES_PER_VALUE * max(source.n, 1)))
    parts = []
    for first in range(0, count, block_columns):
        block = slice(first, min(first + block_columns, count))
        chunks = [
            source.read(np.arange(start, min(start + chunk_rows, source.n), dtype=np.int64)).x[:, block]
            for start in range(0, source.n, chunk_rows)
        ]
        parts.append(summarize(np.concatenate(chunks, dtype=np.float64)))
    return FeatureStats(
        **{
            spec.name: np.concatenate([getattr(part, spec.name) for part in parts])
            for spec in fields(FeatureStats)
        }
    )
