"""CSV and Parquet tables as a data source: one row per sample, a label column and numeric feature columns.

A table is parsed once, whole, into memory (x float32 ``[N, F]``, y int64 ``[N]``) and then read like any
arrays. Every cell the run uses must be a finite number: a missing value, text or infinity is refused with
its line (CSV) or row (Parquet) and column, since silently imputing would judge a model on inputs nobody
chose. CSV is read with Python's ``csv`` module (streamed, no pandas); Parquet with pyarrow, imported only
here, from the file's schema first and never through ``to_pandas()`` (its pandas metadata is ignored: nothing
from the file is executed).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import numpy as np

from gate.data import files
from gate.data.sources import ArraySource
from gate.errors import DataError

DEFAULT_LABEL_COLUMN = "label"
DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "','", ";": "';'", "\t": "tab"}
_SNIFF_RECORDS = 20
_CHUNK_ROWS = 8192
_PARQUET_BATCH_ROWS = 65_536
# Spellings of a missing value in exported tables (compared lower-cased, stripped).
_MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-", "#n/a", "<na>"})
_PANDAS_INDEX = re.compile(r"__index_level_\d+__")  # pyarrow's name for a pandas index stored as a column
_INT64_MAX = np.iinfo(np.int64).max

_MISSING_HINT = (
    "impute or drop missing values before gating (gate's missing_values corruption tests how the model "
    "copes with imputation)"
)
_TEXT_HINT = "encode categorical features as numbers (one-hot or ordinal) before gating"
_LABEL_HINT = "encode the classes as integers 0..C-1 (e.g. each class name's position in the sorted names)"


@dataclass(frozen=True)
class Columns:
    """Which columns of a table are read, by position in the file."""

    names: tuple[str, ...]  # every column, in file order
    label: int
    features: tuple[int, ...]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.names[i] for i in self.features)


def choose_columns(
    origin: str,
    names: Sequence[str],
    *,
    label_column: str | None,
    feature_columns: Sequence[str] | None,
) -> tuple[Columns, list[str]]:
    """The label column and the feature columns (all others in file order, or exactly ``feature_columns``),
    with notes on the columns left out."""
    names = tuple(names)
    _check_names(origin, names)
    label = DEFAULT_LABEL_COLUMN if label_column is None else label_column
    if label not in names:
        raise DataError(
            f"no label column {label!r}; the columns are {list(names)}",
            path=origin,
            hint="name it in the policy: features: {label: COLUMN}",
        )
    notes: list[str] = []
    if feature_columns is None:
        index_columns = [name for name in names if _PANDAS_INDEX.fullmatch(name)]
        chosen = [name for name in names if name != label and name not in index_columns]
        if index_columns:
            notes.append(
                f"columns {index_columns} are a pandas index stored by pyarrow: not features, ignored"
            )
    else:
        chosen = _checked_feature_columns(origin, names, label, tuple(feature_columns))
        ignored = [name for name in names if name != label and name not in chosen]
        if ignored:
            notes.append(f"columns {ignored} are ignored: feature_columns names the features")
    if not chosen:
        raise DataError(f"the table has no feature columns besides the label {label!r}", path=origin)
    return Columns(names, names.index(label), tuple(names.index(name) for name in chosen)), notes


def _check_names(origin: str, names: tuple[str, ...]) -> None:
    for position, name in enumerate(names, start=1):
        if not name.strip():
            raise DataError(
                f"column {position} has no name; every column needs one",
                path=origin,
                hint="pandas writes its index as an unnamed first column: save with to_csv(..., index=False)"
                if position == 1
                else None,
            )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError(f"column names must be distinct; {repeated} repeat", path=origin)


def _checked_feature_columns(
    origin: str, names: tuple[str, ...], label: str, wanted: tuple[str, ...]
) -> list[str]:
    missing = [name for name in wanted if name not in names]
    if missing:
        raise DataError(
            f"feature_columns names {missing}, which the table lacks; the columns are {list(names)}",
            path=origin,
        )
    if label in wanted:
        raise DataError(f"feature_columns names the label column {label!r}", path=origin)
    repeated = sorted({name for name in wanted if wanted.count(name) > 1})
    if repeated:
        raise DataError(f"feature_columns names {repeated} more than once", path=origin)
    return list(wanted)


def _table_source(
    origin: str, columns: Columns, x: np.ndarray, y: np.ndarray, notes: list[str]
) -> ArraySource:
    if len(y) == 0:
        raise DataError("the table has no rows (a header, or a schema, and no samples)", path=origin)
    return ArraySource(origin, x, y, None, notes=notes, feature_names=columns.feature_names)


def _check_values(origin: str, count: int) -> None:
    if count > files.MAX_TABLE_VALUES:
        raise DataError(
            f"the table holds more than {files.MAX_TABLE_VALUES:,} values (rows times columns read), the limit",
            path=origin,
            hint="raise gate.data.files.MAX_TABLE_VALUES if tables this large are expected",
        )


# CSV ------------------------------------------------------------------------------------------------------


def open_csv(
    path: Path, *, label_column: str | None = None, feature_columns: Sequence[str] | None = None
) -> ArraySource:
    """Parse a UTF-8 CSV file (BOM tolerated; delimiter ``,`` ``;`` or tab, sniffed; a header row)."""
    origin = str(path)
    with files.open_regular(path) as stream:
        size = os.fstat(stream.fileno()).st_size
        files.check_size(path, size, limit=files.MAX_TABLE_FILE_BYTES, limit_name="MAX_TABLE_FILE_BYTES")
        delimiter = sniff_delimiter(stream.read(1 << 16))
        stream.seek(0)
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
        records = _Records(origin, stream, csv.reader(text, delimiter=delimiter, strict=True))
        try:
            return _parse_csv(origin, records, delimiter, label_column, feature_columns)
        finally:
            text.detach()  # the with statement closes the file


def sniff_delimiter(sample: bytes) -> str:
    """The delimiter among ``DELIMITERS`` that splits the header into the most columns with the first
    records agreeing on that count (ties: the earlier in ``DELIMITERS``); ``,`` when none splits it."""
    text = sample.decode("utf-8-sig", errors="replace")
    if len(sample) == 1 << 16 and "\n" in text:
        text = text[: text.rindex("\n")]  # the last line may be cut
    best, best_score = ",", (False, 1)
    for delimiter in DELIMITERS:
        widths = _record_widths(text, delimiter)
        if not widths or widths[0] < 2:
            continue
        score = (all(width == widths[0] for width in widths), widths[0])
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _record_widths(text: str, delimiter: str) -> list[int]:
    widths: list[int] = []
    try:
        for record in csv.reader(io.StringIO(text), delimiter=delimiter):
            if record:
                widths.append(len(record))
            if len(widths) == _SNIFF_RECORDS:
                break
    except csv.Error:
        pass  # a quoted field cut by the sample's end
    return widths


class _Records:
    """The non-empty records of a CSV reader, each with the file line it starts on (1-based)."""

    def __init__(self, origin: str, stream: BinaryIO, reader: Any) -> None:
        self.origin, self.stream, self.reader = origin, stream, reader

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        while True:
            line = self.reader.line_num + 1
            try:
                record = next(self.reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise DataError(
                    f"line {self.reader.line_num}: malformed CSV ({exc})", path=self.origin
                ) from exc
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"near line {line}: the file is not UTF-8 text ({exc.reason})",
                    path=self.origin,
                    hint="save the table as UTF-8 CSV, or as Parquet",
                ) from exc
            if record:  # a blank line
                yield line, record

    def check_growth(self) -> None:
        """The size was checked before reading; a file that grows while it is read is stopped too."""
        limit = files.MAX_TABLE_FILE_BYTES
        files.check_size(
            Path(self.origin), self.stream.tell(), limit=limit, limit_name="MAX_TABLE_FILE_BYTES"
        )


def _parse_csv(
    origin: str,
    records: _Records,
    delimiter: str,
    label_column: str | None,
    feature_columns: Sequence[str] | None,
) -> ArraySource:
    rows = iter(records)
    first = next(rows, None)
    if first is None:
        raise DataError(
            "the file is empty; expected a header row naming the columns, then one row per sample",
            path=origin,
        )
    header_line, header = first
    if all(_is_number(cell) for cell in header):
        raise DataError(
            f"line {header_line} holds numbers, not column names; the first row must name the columns",
            path=origin,
            hint="add a header row, e.g. f0,f1,...,label",
        )
    columns, notes = choose_columns(
        origin, [name.strip() for name in header], label_column=label_column, feature_columns=feature_columns
    )
    if delimiter != ",":
        notes.append(f"columns are separated by {_DELIMITER_NAMES[delimiter]}")
    width = len(columns.names)
    x_chunks: list[np.ndarray] = []
    labels: list[int] = []
    chunk: list[tuple[int, list[str]]] = []
    values: list[list[float]] = []
    for line, record in rows:
        if len(record) != width:
            raise DataError(
                f"line {line} has {_fields(len(record))}; the header (line {header_line}) has {width} "
                f"(separated by {_DELIMITER_NAMES[delimiter]})",
                path=origin,
            )
        values.append(_csv_features(origin, columns, line, record))
        labels.append(_csv_label(origin, line, columns, record))
        chunk.append((line, record))
        if len(chunk) == _CHUNK_ROWS:
            x_chunks.append(_as_float32(origin, columns, chunk, values))
            chunk, values = [], []
            records.check_growth()
            _check_values(origin, len(labels) * (len(columns.features) + 1))
    if chunk:
        x_chunks.append(_as_float32(origin, columns, chunk, values))
    _check_values(origin, len(labels) * (len(columns.features) + 1))
    x = np.concatenate(x_chunks) if x_chunks else np.zeros((0, len(columns.features)), np.float32)
    return _table_source(origin, columns, x, np.asarray(labels, dtype=np.int64), notes)


def _fields(count: int) -> str:
    return "1 field" if count == 1 else f"{count} fields"


def _csv_features(origin: str, columns: Columns, line: int, record: list[str]) -> list[float]:
    """The record's feature cells as numbers; the first that is not a finite number is refused."""
    try:
        values = [float(record[i]) for i in columns.features]
    except ValueError:
        values = [math.nan]  # found below, cell by cell
    if not math.isfinite(sum(values)):  # NaN and inf propagate (and a sum of huge values overflows)
        for i in columns.features:
            value = _number_or_none(record[i])
            if value is None or not math.isfinite(value):
                _refuse_cell(origin, line, columns.names[i], record[i])
    return values


def _as_float32(
    origin: str, columns: Columns, chunk: list[tuple[int, list[str]]], values: list[list[float]]
) -> np.ndarray:
    """float32 [len(chunk), F]; a finite value beyond float32's range (it would become inf) is refused."""
    with np.errstate(over="ignore"):
        x = np.asarray(values, dtype=np.float64).astype(np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        row, position = (int(i[0]) for i in np.nonzero(~finite))
        line, record = chunk[row]
        column = columns.features[position]
        _refuse_cell(origin, line, columns.names[column], record[column])
    return x


def _refuse_cell(origin: str, line: int, column: str, cell: str) -> NoReturn:
    where = f"line {line}, column {column!r}"
    _refuse_value(origin, where, cell, _number_or_none(cell))


def _refuse_value(origin: str, where: str, shown: str, value: float | None) -> NoReturn:
    """A feature value that is missing, text, infinite or too large for float32, said as such."""
    if (value is None and shown.strip().lower() in _MISSING) or (value is not None and math.isnan(value)):
        raise DataError(
            f"{where}: a missing value ({shown!r}); features must be finite numbers",
            path=origin,
            hint=_MISSING_HINT,
        )
    if value is None:
        raise DataError(
            f"{where}: {shown!r} is not a number; features must be numbers", path=origin, hint=_TEXT_HINT
        )
    reason = "is infinite" if math.isinf(value) else "is beyond float32's range"
    raise DataError(
        f"{where}: {shown!r} {reason}; features must be finite numbers",
        path=origin,
        hint="clip or drop values that are infinite or too large for float32 before gating",
    )


def _csv_label(origin: str, line: int, columns: Columns, record: list[str]) -> int:
    cell = record[columns.label]
    where = f"line {line}, column {columns.names[columns.label]!r}"
    try:
        return _checked_label(origin, where, int(cell))
    except ValueError:
        pass
    value = _number_or_none(cell)
    if value is None:
        if cell.strip().lower() in _MISSING:
            raise DataError(
                f"{where}: a missing label ({cell!r})", path=origin, hint="drop rows without a label"
            )
        raise DataError(f"{where}: label {cell!r} is not a class index", path=origin, hint=_LABEL_HINT)
    if not math.isfinite(value) or not value.is_integer():
        raise DataError(
            f"{where}: label {cell!r} is not an integer class index", path=origin, hint=_LABEL_HINT
        )
    return _checked_label(origin, where, int(value))


def _checked_label(origin: str, where: str, label: int) -> int:
    if label < 0:
        raise DataError(
            f"{where}: label {label}; labels are class indices >= 0", path=origin, hint=_LABEL_HINT
        )
    if label > _INT64_MAX:
        raise DataError(f"{where}: label {label} is beyond int64", path=origin, hint=_LABEL_HINT)
    return label


def _number_or_none(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _is_number(cell: str) -> bool:
    return _number_or_none(cell) is not None


# Parquet --------------------------------------------------------------------------------------------------


def open_parquet(
    path: Path, *, label_column: str | None = None, feature_columns: Sequence[str] | None = None
) -> ArraySource:
    """Read a Parquet file's label and feature columns; the schema is checked from the metadata first."""
    pa, pq = _pyarrow(path)
    origin = str(path)
    with files.open_regular(path) as stream:
        size = os.fstat(stream.fileno()).st_size
        files.check_size(path, size, limit=files.MAX_TABLE_FILE_BYTES, limit_name="MAX_TABLE_FILE_BYTES")
        try:
            parquet = pq.ParquetFile(stream)
            schema = parquet.schema_arrow
            columns, notes = choose_columns(
                origin, schema.names, label_column=label_column, feature_columns=feature_columns
            )
            _check_parquet_types(origin, pa, schema, columns)
            _check_values(origin, parquet.metadata.num_rows * (len(columns.features) + 1))
            x, y = _read_parquet(origin, parquet, columns)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"the Parquet file is corrupt or unreadable ({exc})", path=origin) from exc
    return _table_source(origin, columns, x, y, notes)


def _pyarrow(path: Path) -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise DataError(
            "the file is Parquet, and reading Parquet needs pyarrow, which is not installed",
            path=path,
            hint="pip install pyarrow",
        ) from exc
    return pyarrow, pyarrow.parquet


def _check_parquet_types(origin: str, pa: Any, schema: Any, columns: Columns) -> None:
    label = schema.field(columns.label)
    if not (pa.types.is_integer(label.type) or pa.types.is_floating(label.type)):
        raise DataError(
            f"the label column {label.name!r} has type {label.type}; labels must be integer class indices",
            path=origin,
            hint=_LABEL_HINT,
        )
    for i in columns.features:
        feature = schema.field(i)
        kind = feature.type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
            hint = "cast decimals to float64" if pa.types.is_decimal(kind) else _TEXT_HINT
            raise DataError(
                f"column {feature.name!r} has type {kind}; features must be numbers (integer, floating point "
                "or boolean)",
                path=origin,
                hint=hint,
            )


def _read_parquet(origin: str, parquet: Any, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
    used = [columns.names[columns.label], *columns.feature_names]
    x_parts: list[np.ndarray] = []
    y_parts: list[np.ndarray] = []
    start = 0
    for batch in parquet.iter_batches(
        batch_size=_PARQUET_BATCH_ROWS, columns=used, use_threads=False, use_pandas_metadata=False
    ):
        _check_values(origin, (start + batch.num_rows) * len(used))  # the metadata's row count may lie
        y_parts.append(_parquet_labels(origin, used[0], start, batch.column(0)))
        block = np.empty((batch.num_rows, len(used) - 1), dtype=np.float32)
        for position, name in enumerate(used[1:]):
            block[:, position] = _parquet_feature(origin, name, start, batch.column(position + 1))
        x_parts.append(block)
        start += batch.num_rows
    if not x_parts:
        return np.zeros((0, len(used) - 1), np.float32), np.zeros(0, np.int64)
    return np.concatenate(x_parts), np.concatenate(y_parts)


def _where(start: int, row: int, name: str) -> str:
    return f"sample {start + row} (row {start + row + 1} of the table), column {name!r}"


def _refuse_nulls(origin: str, name: str, start: int, column: Any, hint: str) -> None:
    if column.null_count:
        row = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
        raise DataError(f"{_where(start, row, name)}: a missing value (null)", path=origin, hint=hint)


def _parquet_feature(origin: str, name: str, start: int, column: Any) -> np.ndarray:
    _refuse_nulls(origin, name, start, column, _MISSING_HINT)
    values = column.to_numpy(zero_copy_only=False)
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf, refused below
        x = values.astype(np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        row = int(np.argmin(finite))
        _refuse_value(origin, _where(start, row, name), repr(values[row].item()), float(values[row]))
    return x


def _parquet_labels(origin: str, name: str, start: int, column: Any) -> np.ndarray:
    _refuse_nulls(origin, name, start, column, "drop rows without a label")
    values = column.to_numpy(zero_copy_only=False)
    if values.dtype.kind == "f":
        bad = ~(np.isfinite(values) & (values == np.round(values)))
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(
                f"{_where(start, row, name)}: label {values[row].item()!r} is not an integer class index",
                path=origin,
                hint=_LABEL_HINT,
            )
    with np.errstate(invalid="ignore"):
        too_large = values > _INT64_MAX  # uint64 beyond int64, or a float that no int64 holds
    negative = values < 0
    bad = too_large | negative
    if bad.any():
        row = int(np.argmax(bad))
        found = values[row].item()
        raise DataError(
            f"{_where(start, row, name)}: label {found!r}; labels are class indices >= 0 (and within int64)",
            path=origin,
            hint=_LABEL_HINT,
        )
    return values.astype(np.int64)
