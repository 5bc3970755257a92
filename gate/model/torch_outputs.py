"""Which of a PyTorch forward's outputs gate judges: one logits tensor out of a tuple, a dict or a ``ModelOutput``.

The rule never guesses between two tensors (``resolve_output``):

* a tensor is the logits as it is (no ``output`` is accepted beside it);
* a mapping (a dict, or a Hugging Face ``ModelOutput``, an ``OrderedDict`` subclass): the key named by
  ``output``, else ``logits``, else its only tensor value;
* an object with attributes (a dataclass standing in for a ``ModelOutput``): the attribute named by
  ``output``, else ``logits``;
* a tuple or list: the element at the index ``output`` gives (``"0"``; a named tuple's field name works
  too), else its only tensor element.

Anything else, or several candidates and no ``output``, is a ``ModelError`` that names the candidates
with their shapes. transformers is never imported: a ``ModelOutput`` is recognised by its shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from gate.errors import ModelError

LOGITS = "logits"
HINT = "name the logits with output: in gate-model.yaml (or --model-output KEY, or an index such as 0)"

Access = Literal["key", "attribute", "index"]


@dataclass(frozen=True)
class OutputPath:
    """How to reach the logits in the forward's output: ``out[key]``, ``getattr(out, key)`` or ``out[index]``."""

    access: Access
    key: str | int
    note: str


class SelectedOutput(nn.Module):
    """``module`` whose forward returns one tensor: the part of its output that ``path`` names."""

    def __init__(self, module: nn.Module, path: OutputPath) -> None:
        super().__init__()
        self.module = module
        self.access = path.access
        self.key = path.key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module(x)
        if self.access == "attribute":
            return getattr(out, str(self.key))
        return out[self.key]


def _shape(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "[" + ", ".join(str(d) for d in value.shape) + "]"
    return type(value).__name__


def _candidates(items: Sequence[tuple[Any, Any]]) -> str:
    return ", ".join(f"{key!r}: {_shape(value)}" for key, value in items)


def _attributes(out: Any) -> list[tuple[str, Any]]:
    names = getattr(out, "__dataclass_fields__", None) or vars(out)
    return [(name, getattr(out, name, None)) for name in names]


def _described(out: Any) -> str:
    name = type(out).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _chosen(out: Any, path: OutputPath, value: Any, where: str) -> OutputPath:
    if not isinstance(value, torch.Tensor):
        raise ModelError(
            f"the forward returns {_described(out)} whose {where} is {_shape(value)}, not a tensor of logits",
            hint=HINT,
        )
    return path


def _from_mapping(out: Mapping[Any, Any], wanted: str | None) -> OutputPath:
    items = list(out.items())
    what = _described(out)
    if wanted is not None:
        if wanted not in out:
            raise ModelError(
                f"output {wanted!r} is not a key of the {type(out).__name__} the forward returns; its keys "
                f"are {_candidates(items)}",
                hint=HINT,
            )
        path = OutputPath(
            "key", wanted, f"the forward returns {what}: gate judges {wanted!r} (chosen with output)"
        )
        return _chosen(out, path, out[wanted], f"key {wanted!r}")
    if LOGITS in out:
        path = OutputPath("key", LOGITS, f"the forward returns {what}: gate judges its logits")
        return _chosen(out, path, out[LOGITS], f"key {LOGITS!r}")
    tensors = [(key, value) for key, value in items if isinstance(value, torch.Tensor)]
    if len(tensors) == 1:
        key = tensors[0][0]
        return OutputPath("key", key, f"the forward returns {what}: gate judges {key!r} (its only tensor)")
    raise ModelError(
        f"the forward returns {what} with no 'logits' key and {len(tensors)} tensors ({_candidates(items)}); "
        "gate cannot tell which are the logits",
        hint=HINT,
    )


def _from_sequence(out: Sequence[Any], wanted: str | None) -> OutputPath:
    items = list(enumerate(out))
    what = f"{_described(out)} of {len(out)}"
    fields = tuple(getattr(out, "_fields", ()))
    if wanted is not None:
        if wanted in fields:
            index = fields.index(wanted)
        elif wanted.isdigit() and int(wanted) < len(out):
            index = int(wanted)
        else:
            named = f" or one of its fields {list(fields)}" if fields else ""
            raise ModelError(
                f"output {wanted!r} does not name an element of the {type(out).__name__} the forward returns: "
                f"expected an index 0..{len(out) - 1}{named}; its elements are {_candidates(items)}",
                hint=HINT,
            )
        path = OutputPath(
            "index", index, f"the forward returns {what}: gate judges element {index} (chosen with output)"
        )
        return _chosen(out, path, out[index], f"element {index}")
    tensors = [(index, value) for index, value in items if isinstance(value, torch.Tensor)]
    if len(tensors) == 1:
        index = tensors[0][0]
        return OutputPath(
            "index", index, f"the forward returns {what}: gate judges element {index} (its only tensor)"
        )
    raise ModelError(
        f"the forward returns {what} with {len(tensors)} tensors ({_candidates(items)}); gate cannot tell "
        "which are the logits",
        hint=HINT,
    )


def _from_attributes(out: Any, wanted: str | None) -> OutputPath:
    what = _described(out)
    name = wanted if wanted is not None else LOGITS
    if not hasattr(out, name):
        raise ModelError(
            f"output {name!r} is not an attribute of the {type(out).__name__} the forward returns; its "
            f"attributes are {_candidates(_attributes(out))}",
            hint=HINT,
        )
    chosen = f"{name!r} (chosen with output)" if wanted is not None else "its logits"
    note = f"the forward returns {what}: gate judges {chosen}"
    return _chosen(out, OutputPath("attribute", name, note), getattr(out, name), f"attribute {name!r}")


def resolve_output(out: Any, wanted: str | None) -> OutputPath | None:
    """The path to the logits in ``out``, one forward's output; None for a tensor (nothing to choose).

    Raises:
        ModelError: ``wanted`` names nothing in ``out`` or no tensor; ``out`` holds several tensors and
            ``wanted`` is None; or ``out`` is neither a tensor, a mapping, a sequence nor has ``logits``.
    """
    if isinstance(out, torch.Tensor):
        if wanted is not None:
            raise ModelError(
                f"output {wanted!r} was given, but the forward returns one tensor {_shape(out)}: there is "
                "nothing to choose",
                hint="remove output: it chooses among a forward's outputs",
            )
        return None
    if isinstance(out, Mapping):
        return _from_mapping(out, wanted)
    if isinstance(out, (tuple, list)):
        return _from_sequence(out, wanted)
    if hasattr(out, LOGITS) or (wanted is not None and hasattr(out, wanted)):
        return _from_attributes(out, wanted)
    raise ModelError(
        f"the forward returns {_described(out)}; expected a tensor of logits, a tuple, a dict or an object "
        "with a logits attribute",
        hint="return the logits tensor from forward",
    )


def select_output(
    module: nn.Module, example: torch.Tensor, wanted: str | None
) -> tuple[nn.Module, str | None]:
    """``module`` made to return one logits tensor, and the note saying what was chosen (None if unchanged).

    The forward runs once on ``example`` to see what it returns. A forward that fails here is left to
    the export to report, unless ``wanted`` was given (it could not be honoured).
    """
    try:
        with torch.no_grad():
            out = module(example)
    except Exception as error:
        if wanted is None:
            return module, None
        raise ModelError(
            f"cannot apply output {wanted!r}: the forward failed on the example input: {type(error).__name__}: {error}"
        ) from error
    path = resolve_output(out, wanted)
    if path is None:
        return module, None
    return SelectedOutput(module, path).eval(), path.note
