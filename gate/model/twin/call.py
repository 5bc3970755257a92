"""The context every op function receives: a node's attributes (already decoded) and the model's opset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from gate.errors import ModelError

# Every op function takes the call context and the node's inputs (``None`` for an omitted optional input).
OpFunction = Callable[..., "torch.Tensor | tuple[torch.Tensor, ...]"]


@dataclass(frozen=True)
class OpCall:
    """One ONNX node as the interpreter sees it."""

    op_type: str
    name: str
    opset: int
    attrs: dict[str, Any] = field(default_factory=dict)
    num_outputs: int = 1

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def unsupported(self, what: str) -> ModelError:
        """An error for a variant of a known op that the twin does not implement."""
        return ModelError(f"the twin cannot run {self.op_type} node {self.name!r}: {what} is not supported")


def ints(value: torch.Tensor | None) -> list[int] | None:
    """A 1-D int64 tensor input (axes, shapes, pads) as a Python list; these never need gradients."""
    return None if value is None else [int(v) for v in value.reshape(-1).tolist()]
