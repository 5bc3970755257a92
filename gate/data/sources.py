"""Random access to the samples of one data source, row by row, never the whole set at once.

Every source answers ``read(indices)`` with float32 ``x``, int64 ``y``, an optional float32 ``mask`` and an
optional int64 ``group`` (a subgroup id per sample, named by ``group_names``) for just those rows; ``EvalData`` (in ``evaldata.py``) builds batches and the streamed checks on top of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from gate.data.features import checked_feature_names
from gate.errors import DataError


@dataclass(frozen=True)
class Rows:
    """Some rows of a source, already in the dtypes batches use."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray | None
    group: np.ndarray | None = None


class Source(Protocol):
    """What ``EvalData`` needs from a data source."""

    origin: str
    n: int
    sample_shape: tuple[int, ...]
    has_mask: bool
    notes: list[str]
    scan_pixels: bool  # False where pixel values are valid by construction (decoded images)
    feature_names: tuple[str, ...] | None  # the columns of a table; None where the data has no names
    group_names: tuple[str, ...] | None  # names[g] names subgroup g; None where the data has no groups

    def read(self, indices: np.ndarray) -> Rows: ...

    def labels(self, indices: np.ndarray) -> np.ndarray: ...

    def groups(self, indices: np.ndarray) -> np.ndarray:
        """The subgroup ids of these rows (only called where ``group_names`` is not None)."""

    def verify(self, indices: np.ndarray) -> None:
        """Prove at load that these rows can be read as batches will read them (what the scan skipped)."""


def check_layout(origin: str, x: Any, y: Any, mask: Any | None) -> list[str]:
    """Check dtypes and shapes from metadata alone (no data is read); return notes on conversions."""
    notes: list[str] = []
    _refuse_objects(origin, "x", x.dtype)
    _refuse_objects(origin, "y", y.dtype)
    if x.dtype.kind != "f":
        raise DataError(
            f"x must be a float array scaled into input_range; found dtype {x.dtype}",
            path=origin,
            hint="e.g. x.astype(np.float32) / 255 for 8-bit images",
        )
    if x.dtype != np.float32:
        notes.append(f"x has dtype {x.dtype}; it is converted to float32")
    if x.ndim not in (2, 4):
        raise DataError(
            f"x must be images [N, C, H, W] or features [N, F]; found {x.ndim} dimensions, shape {tuple(x.shape)}",
            path=origin,
            hint="add a channel axis to grayscale images: x[:, None]" if x.ndim == 3 else None,
        )
    if 0 in x.shape:
        raise DataError(f"x is empty: shape {tuple(x.shape)}", path=origin)
    if y.dtype.kind not in "iu":
        raise DataError(f"y must hold integer class labels; found dtype {y.dtype}", path=origin)
    if y.ndim != 1:
        raise DataError(
            f"y must be one label per sample, shape [N]; found shape {tuple(y.shape)}", path=origin
        )
    if len(y) != len(x):
        raise DataError(
            f"x and y must have the same length; found {len(x)} samples and {len(y)} labels", path=origin
        )
    if mask is not None:
        _check_mask_layout(origin, x, mask)
    return notes


def _check_mask_layout(origin: str, x: Any, mask: Any) -> None:
    _refuse_objects(origin, "mask", mask.dtype)
    if mask.dtype.kind not in "fiub":
        raise DataError(
            f"mask must be numeric (1 where the evidence is); found dtype {mask.dtype}", path=origin
        )
    if x.ndim != 4:
        raise DataError(f"a mask needs image data [N, C, H, W]; x has shape {tuple(x.shape)}", path=origin)
    if mask.ndim != 3 or tuple(mask.shape[1:]) != tuple(x.shape[2:]):
        raise DataError(
            f"mask must have shape [N, H, W] = [{len(x)}, {x.shape[2]}, {x.shape[3]}]; found {tuple(mask.shape)}",
            path=origin,
        )
    if len(mask) != len(x):
        raise DataError(f"x and mask must have the same length; found {len(x)} and {len(mask)}", path=origin)


def checked_groups(origin: str, n: int, group: Any | None, group_names: Any | None) -> tuple[str, ...] | None:
    """Check a ``group`` array (ids ``[N]`` >= 0) and its optional ``group_names``; return a name per id.

    Without ``group_names`` group ``g`` is named ``str(g)``. Reads ``group`` whole: one integer a sample.
    """
    if group is None:
        if group_names is not None:
            raise DataError(
                "group_names names the groups of a 'group' array, and the data has none", path=origin
            )
        return None
    _refuse_objects(origin, "group", group.dtype)
    if group.dtype.kind not in "iu":
        raise DataError(f"group must hold integer group ids; found dtype {group.dtype}", path=origin)
    if group.ndim != 1 or len(group) != n:
        raise DataError(
            f"group must be one id per sample, shape [{n}]; found shape {tuple(group.shape)}", path=origin
        )
    ids = np.asarray(group)
    if ids.min() < 0:
        first = int(np.argmax(ids < 0))
        raise DataError(f"group ids must be >= 0; sample {first} has group {int(ids[first])}", path=origin)
    count = int(ids.max()) + 1
    if group_names is None:
        return tuple(str(g) for g in range(count))
    return _checked_group_names(origin, group_names, count)


def _checked_group_names(origin: str, group_names: Any, count: int) -> tuple[str, ...]:
    _refuse_objects(origin, "group_names", group_names.dtype)
    if group_names.dtype.kind not in "US" or group_names.ndim != 1:
        raise DataError(
            f"group_names must be a 1-D string array (names[g] names group g); found dtype "
            f"{group_names.dtype}, shape {tuple(group_names.shape)}",
            path=origin,
        )
    try:
        names = tuple(
            v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(group_names).tolist()
        )
    except UnicodeDecodeError as exc:
        raise DataError(f"group_names must be UTF-8 text ({exc})", path=origin) from None
    if len(names) < count:
        raise DataError(f"group_names has {len(names)} names but group ids go up to {count - 1}", path=origin)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError(f"group_names must be distinct; repeated: {repeated[:10]}", path=origin)
    return names


def _refuse_objects(origin: str, name: str, dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise DataError(
            f"{name} is an object array; gate reads only plain numeric arrays (objects would need pickle)",
            path=origin,
        )


@dataclass
class ArraySource:
    """Arrays (memory maps of an .npz, or arrays a function returned) read row by row."""

    origin: str
    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray | None
    notes: list[str] = field(default_factory=list)
    scan_pixels: bool = True
    keepalive: object = None  # e.g. the NpzArchive whose temporary files back the memory maps
    feature_names: tuple[str, ...] | None = None
    group: np.ndarray | None = None
    group_names: tuple[str, ...] | np.ndarray | None = None  # checked into a tuple of names

    def __post_init__(self) -> None:
        self.notes = [*self.notes, *check_layout(self.origin, self.x, self.y, self.mask)]
        self.group_names = checked_groups(self.origin, len(self.x), self.group, _as_array(self.group_names))
        if self.feature_names is not None:
            if self.x.ndim != 2:
                raise DataError(
                    f"feature names need features [N, F]; x has shape {tuple(self.x.shape)}", path=self.origin
                )
            self.feature_names = checked_feature_names(self.origin, self.feature_names, self.x.shape[1])

    @property
    def n(self) -> int:
        return len(self.x)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    @property
    def has_mask(self) -> bool:
        return self.mask is not None

    def read(self, indices: np.ndarray) -> Rows:
        # A float64 beyond float32's range becomes inf here, which the scan refuses as not finite.
        with np.errstate(over="ignore"):
            mask = None if self.mask is None else np.asarray(self.mask[indices], dtype=np.float32)
            x = np.asarray(self.x[indices], dtype=np.float32)
        return Rows(
            x=x, y=np.asarray(self.y[indices], dtype=np.int64), mask=mask, group=self._group_rows(indices)
        )

    def labels(self, indices: np.ndarray) -> np.ndarray:
        return np.asarray(self.y[indices], dtype=np.int64)

    def groups(self, indices: np.ndarray) -> np.ndarray:
        group = self._group_rows(indices)
        if group is None:
            raise DataError("the data has no 'group' array", path=self.origin)
        return group

    def _group_rows(self, indices: np.ndarray) -> np.ndarray | None:
        return None if self.group is None else np.asarray(self.group[indices], dtype=np.int64)

    def verify(self, indices: np.ndarray) -> None:
        """Nothing left to prove: the scan read every value."""


class DatasetSource:
    """A map-style ``torch.utils.data.Dataset`` whose items are ``(x, y)`` or ``(x, y, mask)``."""

    scan_pixels = True
    feature_names = None
    group_names = None  # items are (x, y) or (x, y, mask): a Dataset carries no groups

    def __init__(self, origin: str, dataset: Any) -> None:
        self.origin = origin
        self.dataset = dataset
        self.notes: list[str] = []
        try:
            self.n = len(dataset)
        except TypeError:
            raise DataError(
                f"expected a map-style Dataset with __len__ and __getitem__; found {type(dataset).__name__}",
                path=origin,
            ) from None
        if self.n == 0:
            raise DataError("the Dataset is empty (len 0)", path=origin)
        first = self._item(0)
        self.has_mask = len(first) == 3
        x0 = np.asarray(first[0])
        fake_y = np.zeros(1, dtype=np.int64)
        mask = None if not self.has_mask else np.asarray(first[2])[None]
        self.notes = check_layout(origin, x0[None], fake_y, mask)
        self.sample_shape = tuple(int(d) for d in x0.shape)

    def _item(self, index: int) -> tuple[Any, ...]:
        try:
            item = self.dataset[index]
        except Exception as exc:
            raise DataError(f"reading item {index} of the Dataset raised {exc!r}", path=self.origin) from exc
        if not isinstance(item, Sequence) or len(item) not in (2, 3):
            raise DataError(
                f"Dataset items must be (x, y) or (x, y, mask); item {index} is {type(item).__name__}",
                path=self.origin,
            )
        return tuple(_to_numpy(part) for part in item)

    def read(self, indices: np.ndarray) -> Rows:
        xs, ys, masks = [], [], []
        for index in indices.tolist():
            item = self._item(index)
            if (len(item) == 3) != self.has_mask:
                raise DataError(
                    f"item {index} has {len(item)} parts; item 0 has {3 if self.has_mask else 2}",
                    path=self.origin,
                )
            xs.append(self._sample(index, item[0]))
            ys.append(_label(self.origin, index, item[1]))
            if self.has_mask:
                masks.append(self._mask(index, item[2]))
        return Rows(
            x=np.stack(xs),
            y=np.asarray(ys, dtype=np.int64),
            mask=np.stack(masks) if self.has_mask else None,
        )

    def _sample(self, index: int, x: np.ndarray) -> np.ndarray:
        if tuple(x.shape) != self.sample_shape:
            raise DataError(
                f"item {index} has x of shape {tuple(x.shape)}; item 0 has {self.sample_shape}",
                path=self.origin,
            )
        if x.dtype.kind != "f":
            raise DataError(f"item {index} has x of dtype {x.dtype}; expected a float type", path=self.origin)
        with np.errstate(over="ignore"):  # beyond float32's range becomes inf, refused by the scan
            return np.asarray(x, dtype=np.float32)

    def _mask(self, index: int, mask: np.ndarray) -> np.ndarray:
        if tuple(mask.shape) != self.sample_shape[1:]:
            raise DataError(
                f"item {index} has a mask of shape {tuple(mask.shape)}; expected [H, W] = {self.sample_shape[1:]}",
                path=self.origin,
            )
        return np.asarray(mask, dtype=np.float32)

    def labels(self, indices: np.ndarray) -> np.ndarray:
        """A Dataset has no separate access to labels: this reads the items."""
        return self.read(indices).y

    def groups(self, indices: np.ndarray) -> np.ndarray:
        raise DataError("a Dataset's items carry no group", path=self.origin)

    def verify(self, indices: np.ndarray) -> None:
        """Nothing left to prove: the scan read every item."""


def _as_array(value: Any | None) -> np.ndarray | None:
    """Names given as a list or tuple (library callers) or as an array (an .npz member)."""
    return None if value is None else np.asarray(value)


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _label(origin: str, index: int, value: Any) -> int:
    label = np.asarray(value)
    if label.size != 1 or label.dtype.kind not in "iu":
        raise DataError(
            f"item {index} has label {label.tolist()!r} (dtype {label.dtype}, shape {label.shape}); expected one integer",
            path=origin,
        )
    return int(label.reshape(()))
