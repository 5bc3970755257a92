"""``import torchvision`` that also works when the installed torchvision was built for another torch.

The torchvision wheel on the package index is a CUDA build; beside the CPU torch its compiled ops do not
load, and its import fails on ``torch.library.register_fake("torchvision::nms")`` ("operator
torchvision::nms does not exist"). The classification models the zoo tests build never call those ops,
so declaring the two schemas the import registers fake kernels for is enough. A torchvision that matches
its torch imports on the first try and is left alone; this is a test-side workaround, never gate's.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import torch

_MISSING_OP = "torchvision::nms does not exist"
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library: torch.library.Library | None = None  # kept alive: dropping it would undefine the ops


def _forget_partial_import() -> None:
    for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
        del sys.modules[name]


def import_torchvision() -> ModuleType:
    """torchvision, with the two operator schemas declared first if its own ops failed to load.

    Raises:
        ImportError: torchvision is not installed (``pytest.importorskip`` turns that into a skip).
    """
    global _library
    try:
        import torchvision
    except RuntimeError as error:
        if _MISSING_OP not in str(error):
            raise
        _forget_partial_import()
        _library = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            _library.define(schema)
        import torchvision
    return torchvision


def import_torchvision_if_installed() -> None:
    """Make an installed torchvision importable before a library that imports it (transformers does)."""
    if importlib.util.find_spec("torchvision") is not None:
        import_torchvision()
