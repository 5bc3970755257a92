"""The evaluation data a run sees: validated once (streamed), then read batch by batch in a fixed order."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gate.data import files
from gate.data.entrypoint import is_entry_point, open_entry_point
from gate.data.features import FeatureStats, default_feature_names, feature_stats
from gate.data.folder import open_folder
from gate.data.npz import USED_MEMBERS, NpzArchive
from gate.data.sampling import select_indices
from gate.data.sniff import Kind, sniff
from gate.data.sources import ArraySource, Rows, Source
from gate.data.table import open_csv, open_parquet
from gate.errors import DataError

logger = logging.getLogger(__name__)

SCAN_CHUNK_BYTES = 4 << 20  # how much of x one validation step reads at a time
_HASH_CHUNK = 1 << 20
_FOLDER_RANGE = (0.0, 1.0)  # what an image folder is scaled to when no input_range is given
_NO_SUCH_SOURCE = (
    "no such file or folder; expected an .npz file, a CSV or Parquet table, an image folder or "
    "package.module:function"
)


@dataclass(frozen=True, eq=False)
class Batch:
    """Consecutive selected samples, with their positions in the full data set as stable ids."""

    index: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor | None
    group: torch.Tensor | None = None
    """Subgroup ids (``EvalData.group_names`` names them), where the data has a ``group``."""

    def __len__(self) -> int:
        return len(self.index)


@dataclass(frozen=True, eq=False)
class EvalData:
    """A validated data source plus the samples selected for this run; batches are read on demand."""

    source: str
    sha256: str
    sample_shape: tuple[int, ...]
    has_mask: bool
    selected: np.ndarray
    n_total: int
    input_range: tuple[float, float] | None  # None: no global range was checked (features judged one by one)
    notes: tuple[str, ...]
    feature_names: tuple[str, ...] | None  # features [N, F]: a table's columns, else f0..f{F-1}; images: None
    feature_stats: FeatureStats | None = field(repr=False)  # features [N, F], over all rows; images: None
    group_names: tuple[str, ...] | None  # names[g] names subgroup g; None: the data has no groups
    _reader: Source = field(repr=False)

    def __len__(self) -> int:
        return len(self.selected)

    @property
    def has_group(self) -> bool:
        return self.group_names is not None

    def batches(self, batch_size: int, device: torch.device | str = "cpu") -> Iterator[Batch]:
        """Yield the selected samples in ascending index order, ``batch_size`` at a time, read lazily."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, found {batch_size}")
        for start in range(0, len(self.selected), batch_size):
            indices = self.selected[start : start + batch_size]
            yield _to_batch(indices, self._reader.read(indices), torch.device(device))

    def labels(self) -> np.ndarray:
        """The labels of the selected samples, in selection order (no images are decoded)."""
        return self._reader.labels(self.selected)

    def groups(self, indices: np.ndarray | None = None) -> np.ndarray:
        """The subgroup ids of ``indices`` (data set positions; default the selected samples), no image decoded.

        Raises:
            DataError: the data has no groups.
        """
        if self.group_names is None:
            raise DataError(
                "the data has no subgroups: give a 'group' array (ids [N], optionally 'group_names') or an "
                "image folder with sub-folders per class (class/subgroup/*.png)",
                path=self.source,
            )
        return self._reader.groups(self.selected if indices is None else np.asarray(indices, dtype=np.int64))

    def with_selection(self, indices: np.ndarray | list[int] | torch.Tensor) -> EvalData:
        """The same data restricted to ``indices`` (data set positions; sorted, duplicates refused)."""
        chosen = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64)
        if chosen.ndim != 1:
            raise ValueError(f"indices must be one-dimensional, found shape {chosen.shape}")
        if chosen.size and (chosen.min() < 0 or chosen.max() >= self.n_total):
            raise ValueError(
                f"indices must lie in [0, {self.n_total}); found min {chosen.min()}, max {chosen.max()}"
            )
        unique = np.unique(chosen)
        if len(unique) != len(chosen):
            raise ValueError("indices must not repeat")
        return dataclasses.replace(self, selected=unique)


def _to_batch(indices: np.ndarray, rows: Rows, device: torch.device) -> Batch:
    mask = None if rows.mask is None else _to_device(rows.mask, device)
    return Batch(
        index=_to_device(indices.astype(np.int64, copy=True), device),
        x=_to_device(rows.x, device),
        y=_to_device(rows.y, device),
        mask=mask,
        group=None if rows.group is None else _to_device(rows.group, device),
    )


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """To CUDA through pinned memory without blocking the host (the copy is ordered on the stream that uses it)."""
    tensor = torch.from_numpy(array)
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def load_data(
    source: str,
    *,
    input_range: tuple[float, float] | None = (0.0, 1.0),
    samples: int | None = None,
    seed: int = 0,
    shard: tuple[int, int] | None = None,
    input_shape: tuple[int, ...] | None = None,
    label_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
) -> EvalData:
    """Open, validate (one streamed pass) and digest ``source``; select the samples this run evaluates.

    What a file is comes from its bytes, never its name: a zip is an ``.npz``, a file starting and ending
    with ``PAR1`` is Parquet, UTF-8 text is CSV.

    Args:
        source: an ``.npz`` file, a CSV or Parquet table, an image folder (one sub-folder per class) or
            ``package.module:function``.
        input_range: the value range the model expects; data outside it is refused. ``None`` checks no
            global range (tabular data whose features are judged one by one against their own ranges);
            an image folder is then scaled to [0, 1].
        samples: draw this many samples (seeded, without replacement); ``None`` keeps all.
        seed: seed of the draw; the same seed gives the same samples whatever the sharding.
        shard: ``(k, n)`` keeps the k-th (1-based) of n disjoint shards of the drawn samples.
        input_shape: the model's per-sample input shape; the data must match (folders are resized to it).
        label_column: a table's label column (default ``label``); other sources ignore it.
        feature_columns: a table's feature columns, exactly and in this order (default: every column but
            the label, in file order); refused for other sources.

    Raises:
        DataError: the source is missing, malformed, or inconsistent with the arguments.
    """
    checked_range = _checked_range(input_range)
    columns = None if feature_columns is None else tuple(feature_columns)
    reader, file_digest = _open(source, checked_range, input_shape, label_column, columns)
    return _evaluation_data(
        source,
        reader,
        file_digest,
        input_range=checked_range,
        samples=samples,
        seed=seed,
        shard=shard,
        input_shape=input_shape,
    )


def from_arrays(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None = None,
    *,
    group: np.ndarray | torch.Tensor | None = None,
    group_names: Sequence[str] | None = None,
    source: str = "<arrays>",
    input_range: tuple[float, float] | None = (0.0, 1.0),
    samples: int | None = None,
    seed: int = 0,
    shard: tuple[int, int] | None = None,
    input_shape: tuple[int, ...] | None = None,
    feature_names: Sequence[str] | None = None,
) -> EvalData:
    """``load_data`` for arrays already in memory (library callers and tests); same checks, digest of the
    arrays. ``feature_names`` names the features of x ``[N, F]`` (default ``f0`` .. ``f{F-1}``); ``group``
    gives each sample a subgroup id, named by ``group_names`` (default ``str(id)``)."""
    checked_range = _checked_range(input_range)
    names = None if feature_names is None else tuple(feature_names)
    arrays = [v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for v in (x, y)]
    mask_array, group_array = (
        None if v is None else v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        for v in (mask, group)
    )
    reader = ArraySource(
        source,
        arrays[0],
        arrays[1],
        mask_array,
        feature_names=names,
        group=group_array,
        group_names=group_names,
    )
    return _evaluation_data(
        source,
        reader,
        "",
        input_range=checked_range,
        samples=samples,
        seed=seed,
        shard=shard,
        input_shape=input_shape,
    )


def _evaluation_data(
    source: str,
    reader: Source,
    file_digest: str,
    *,
    input_range: tuple[float, float] | None,
    samples: int | None,
    seed: int,
    shard: tuple[int, int] | None,
    input_shape: tuple[int, ...] | None,
) -> EvalData:
    """Check ``reader`` against the model's expectations in one streamed pass, then select samples."""
    if input_shape is not None and tuple(input_shape) != reader.sample_shape:
        raise DataError(
            f"the model expects samples of shape {tuple(input_shape)}; the data has {reader.sample_shape}",
            path=source,
        )
    digest = _scan(reader, input_range)
    features = len(reader.sample_shape) == 1
    names = (reader.feature_names or default_feature_names(reader.sample_shape[0])) if features else None
    stats = feature_stats(reader, chunk_rows=_scan_chunk_rows(reader)) if features else None
    # Every sample the run may read (shard 1's whole-set diagnostics read beyond its shard): a broken image
    # among them is refused here, exit 2, rather than in the middle of a check.
    reader.verify(select_indices(reader.n, samples=samples, seed=seed, shard=None))
    notes = list(reader.notes)
    if samples is not None and samples > reader.n:
        notes.append(f"{samples} samples requested but the data has {reader.n}: all are used")
    for note in notes:
        logger.info("%s: %s", source, note)
    return EvalData(
        source=source,
        sha256=file_digest or digest,
        sample_shape=reader.sample_shape,
        has_mask=reader.has_mask,
        selected=select_indices(reader.n, samples=samples, seed=seed, shard=shard),
        n_total=reader.n,
        input_range=input_range,
        notes=tuple(notes),
        feature_names=names,
        feature_stats=stats,
        group_names=reader.group_names,
        _reader=reader,
    )


def _checked_range(input_range: tuple[float, float] | None) -> tuple[float, float] | None:
    if input_range is None:
        return None
    low, high = (float(v) for v in input_range)
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise DataError(f"input_range must be two finite numbers low < high; found {tuple(input_range)}")
    return low, high


def _open(
    source: str,
    input_range: tuple[float, float] | None,
    input_shape: tuple[int, ...] | None,
    label_column: str | None,
    feature_columns: tuple[str, ...] | None,
) -> tuple[Source, str]:
    """The reader for ``source`` and the digest of its files ('' where the arrays must be digested)."""
    path = Path(source)
    if path.is_dir():
        _refuse_feature_columns(source, feature_columns, "an image folder")
        folder = open_folder(path, input_shape=input_shape, input_range=input_range or _FOLDER_RANGE)
        return folder, folder.sha256
    if path.exists():
        files.require_regular(path)  # /dev/zero, a pipe or a socket is refused before it is opened
        return _open_file(path, label_column, feature_columns), _file_sha256(path)
    if is_entry_point(source):
        _refuse_feature_columns(source, feature_columns, "an entry point")
        return open_entry_point(source), ""
    raise DataError(_NO_SUCH_SOURCE, path=source)


def _open_file(path: Path, label_column: str | None, feature_columns: tuple[str, ...] | None) -> ArraySource:
    """An .npz, Parquet or CSV file, told apart by its bytes: a renamed file is read as what it is."""
    content = sniff(path)
    if content.kind is Kind.PARQUET:
        return open_parquet(path, label_column=label_column, feature_columns=feature_columns)
    if content.kind is Kind.TEXT:
        return open_csv(path, label_column=label_column, feature_columns=feature_columns)
    _refuse_feature_columns(str(path), feature_columns, "an .npz file")
    if content.kind is Kind.ZIP or path.suffix.lower() == ".npz":
        return _open_npz(path)  # a binary file named .npz: the .npz reader's own "not a zip"
    raise DataError(
        f"expected an .npz file (a zip), a Parquet file or a UTF-8 CSV table; found binary content that is "
        f"none of these: {content.why_not_text}",
        path=path,
        hint="save the table as UTF-8 CSV or as Parquet, or the arrays with numpy.savez(path, x=..., y=...)",
    )


def _refuse_feature_columns(source: str, feature_columns: tuple[str, ...] | None, what: str) -> None:
    if feature_columns is not None:
        raise DataError(
            f"feature_columns selects columns of a CSV or Parquet table; the data is {what}", path=source
        )


def _open_npz(path: Path) -> ArraySource:
    archive = NpzArchive(path)
    missing = [name for name in ("x", "y") if name not in archive.headers]
    if missing:
        raise DataError(
            f"expected arrays 'x' and 'y' (and optionally 'mask', 'group', 'group_names'); missing {missing}, "
            f"found members {archive.members}",
            path=path,
        )
    for name in USED_MEMBERS:
        header = archive.headers.get(name)
        if header is not None and header.dtype.hasobject:
            raise DataError(
                f"{name} is an object array; gate reads only plain numeric arrays (objects would need pickle)",
                path=path,
            )
        if header is not None and 0 in header.shape:
            raise DataError(f"{name} is empty: shape {header.shape}", path=path)
    notes = []
    if archive.extracted:
        notes.append(f"arrays {archive.extracted} are compressed: decompressed to a temporary file")
    if archive.ignored:
        shown = archive.ignored[:10] + (
            [f"... {len(archive.ignored) - 10} more"] if len(archive.ignored) > 10 else []
        )
        notes.append(
            f"members {shown} are ignored: gate reads only x, y, mask, group and group_names, and never "
            "decompresses, parses or unpickles any other member"
        )
    mask, group, group_names = (
        archive.array(name) if name in archive.headers else None for name in USED_MEMBERS[2:]
    )
    return ArraySource(
        str(path), archive.array("x"), archive.array("y"), mask, notes=notes, keepalive=archive, group=group,
        group_names=group_names,
    )  # fmt: skip


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with files.open_regular(path) as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _scan(reader: Source, input_range: tuple[float, float] | None) -> str:
    """One chunked pass: labels always, pixels (finite, in range) where needed; returns the array digest."""
    chunk = _scan_chunk_rows(reader)
    digest = hashlib.sha256(repr((reader.sample_shape, reader.has_mask)).encode())
    if reader.group_names is not None:  # only then: the digest of data without groups stays as it was
        digest.update(repr(reader.group_names).encode())
    extremes = _Extremes()
    for start in range(0, reader.n, chunk):
        indices = np.arange(start, min(start + chunk, reader.n), dtype=np.int64)
        if not reader.scan_pixels:
            _check_labels(reader, indices, reader.labels(indices))
            continue
        rows = reader.read(indices)
        _check_labels(reader, indices, rows.y)
        _check_finite(reader.origin, "x", indices, rows.x)
        extremes.update(indices, rows.x)
        if rows.mask is not None:
            _check_mask_values(reader.origin, indices, rows.mask)
        for part in (rows.x, rows.y, rows.mask, rows.group):
            if part is not None:
                digest.update(memoryview(np.ascontiguousarray(part)))  # no copy
    if input_range is not None:
        extremes.check(reader.origin, input_range)
    return digest.hexdigest()


def _scan_chunk_rows(reader: Source) -> int:
    """Rows of about ``SCAN_CHUNK_BYTES`` of x."""
    row_bytes = 4 * int(np.prod(reader.sample_shape))
    return max(1, SCAN_CHUNK_BYTES // max(row_bytes, 1))


def _check_labels(reader: Source, indices: np.ndarray, y: np.ndarray) -> None:
    """Labels are class indices. Whether the model has that many outputs is checked by the runner once the
    model is loaded (the data loads first: its first sample is the model's example input)."""
    bad = y < 0
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(
            f"expected labels >= 0; sample {int(indices[first])} has label {int(y[first])}",
            path=reader.origin,
        )


def _check_finite(origin: str, name: str, indices: np.ndarray, values: np.ndarray) -> None:
    finite = np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite))
        raise DataError(
            f"{name} must be finite; sample {int(indices[first])} contains NaN or inf or a value beyond "
            "float32's range "
            f"({int((~finite).sum())} such samples in rows {int(indices[0])}-{int(indices[-1])})",
            path=origin,
        )


def _check_mask_values(origin: str, indices: np.ndarray, mask: np.ndarray) -> None:
    _check_finite(origin, "mask", indices, mask)
    low, high = float(mask.min()), float(mask.max())
    if low < 0.0 or high > 1.0:
        raise DataError(f"mask values must lie in [0, 1]; found min {low:g}, max {high:g}", path=origin)


@dataclass
class _Extremes:
    """Running min/max of x and where they are, so an out-of-range error can name a sample."""

    low: float = np.inf
    high: float = -np.inf
    low_at: int = -1
    high_at: int = -1

    def update(self, indices: np.ndarray, x: np.ndarray) -> None:
        flat = x.reshape(len(x), -1)
        row_min, row_max = flat.min(axis=1), flat.max(axis=1)
        if row_min.min() < self.low:
            self.low, self.low_at = float(row_min.min()), int(indices[np.argmin(row_min)])
        if row_max.max() > self.high:
            self.high, self.high_at = float(row_max.max()), int(indices[np.argmax(row_max)])

    def check(self, origin: str, input_range: tuple[float, float]) -> None:
        low, high = input_range
        tolerance = 1e-6 * (high - low)  # float32 rounding of values computed in float64
        if self.low < low - tolerance or self.high > high + tolerance:
            raise DataError(
                f"x values must lie in input_range [{low:g}, {high:g}]; found min {self.low:g} (sample "
                f"{self.low_at}) and max {self.high:g} (sample {self.high_at})",
                path=origin,
                hint="scale the data to the model's input range, or set input_range to match the data",
            )
