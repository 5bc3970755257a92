"""How gate tells a ``package.module:function`` reference (a model factory, a data entry point) from a
file path: one pattern for both, in a module light enough that the CLI can check an invocation before
torch and ONNX Runtime load."""

from __future__ import annotations

import re

REFERENCE = re.compile(r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<function>[A-Za-z_]\w*)$")


def is_reference(text: str) -> bool:
    """True for ``package.module:function`` (code to import), False for anything else (a path)."""
    return REFERENCE.match(text) is not None
