"""How gate tells a ``package.module:function`` reference (a model factory, a data entry point) from a
file path: one pattern for both, in a module light enough that the CLI can check an invocation before
torch and ONNX Runtime load."""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

REFERENCE = re.compile(r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<function>[A-Za-z_]\w*)$")


def is_reference(text: str) -> bool:
    """True for ``package.module:function`` (code to import), False for anything else (a path)."""
    return REFERENCE.match(text) is not None


@contextmanager
def cwd_importable() -> Iterator[str]:
    """The current directory on ``sys.path`` for the block (yielded), as Python puts it for ``python -m``.

    The block must cover the call of the factory or data function as well as the import: a function that
    imports a module of the current directory inside its body (a lazy import) needs the path then too.
    """
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()  # a module written since the last import must be found
    try:
        yield cwd
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
