"""A ``package.module:function`` data source: the function returns arrays or a map-style Dataset."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from gate.data.sources import ArraySource, DatasetSource
from gate.errors import DataError
from gate.references import REFERENCE, cwd_importable

ENTRY_POINT = REFERENCE


def is_entry_point(source: str) -> bool:
    return ENTRY_POINT.match(source) is not None


def open_entry_point(source: str) -> ArraySource | DatasetSource:
    """Import ``module`` (the current directory importable), call ``function()`` and wrap what it returns."""
    match = ENTRY_POINT.match(source)
    if match is None:
        raise DataError("expected a data entry point of the form package.module:function", path=source)
    with cwd_importable() as cwd:  # for the function's own (lazy) imports too
        function = getattr(_import(source, match["module"], cwd), match["function"], None)
        if not callable(function):
            raise DataError(f"module {match['module']} has no function {match['function']!r}", path=source)
        try:
            result = function()
        except Exception as exc:
            raise DataError(f"calling {source}() raised {exc!r}", path=source) from exc
    return _wrap(source, result)


def _import(source: str, module: str, cwd: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            raise DataError(
                f"module {module!r} not found (looked in the current directory {cwd} and on sys.path)",
                path=source,
            ) from exc
        raise DataError(f"importing {module!r} failed: {exc!r}", path=source) from exc
    except Exception as exc:
        raise DataError(f"importing {module!r} failed: {exc!r}", path=source) from exc


def _wrap(source: str, result: Any) -> ArraySource | DatasetSource:
    if isinstance(result, tuple | list) and len(result) in (2, 3):
        arrays = [_as_array(source, part) for part in result]
        return ArraySource(source, arrays[0], arrays[1], arrays[2] if len(arrays) == 3 else None)
    if isinstance(result, torch.utils.data.IterableDataset):
        raise DataError("expected a map-style Dataset (indexable); found an IterableDataset", path=source)
    if isinstance(result, torch.utils.data.Dataset) or (
        hasattr(result, "__getitem__")
        and hasattr(result, "__len__")
        and not isinstance(result, Sequence | Mapping)
    ):
        return DatasetSource(source, result)
    raise DataError(
        f"expected (x, y), (x, y, mask) or a torch Dataset; the function returned {type(result).__name__}",
        path=source,
    )


def _as_array(source: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except ValueError as exc:  # ragged nested lists
        raise DataError(f"the function returned something that is not an array ({exc})", path=source) from exc
