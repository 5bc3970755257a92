"""Which output of an ONNX model gate judges, the model's own label output beside it, and reading a ZipMap.

scikit-learn, XGBoost and LightGBM models converted with skl2onnx or onnxmltools have two outputs: the
predicted ``label`` (int64 ``[N]``) and the ``probabilities`` (float ``[N, C]``), or, with the converters'
default ZipMap, a ``seq(map(int64, tensor(float)))`` that ONNX Runtime returns as a list of dicts. Gate
judges the float scores; the label is the model's own decision, which export parity compares with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from gate.errors import ModelError

SCORES_TYPE = "tensor(float)"
# Scores gate reads and casts to float32 (a half-precision model's logits, a double one's).
SCORES_TYPES = (SCORES_TYPE, "tensor(float16)", "tensor(double)")
ZIPMAP_TYPE = "seq(map(int64,tensor(float)))"
STRING_ZIPMAP_TYPE = "seq(map(string,tensor(float)))"
DECISION_TYPES = ("bool", "int", "uint")  # the element types of labels, one-hots and thresholds
# Nodes a label passes through unchanged on its way to the output (skl2onnx casts and reshapes it).
_LABEL_PASSTHROUGH = ("Identity", "Cast", "Reshape", "Squeeze", "Flatten")
_CLASS_LABEL_ATTRIBUTES = ("classlabels_int64s", "classlabels_ints")


@dataclass(frozen=True)
class OutputChoice:
    """The session output gate reads scores from, and what it knows about the model's other outputs.

    ``value`` is the graph tensor that holds the scores: the output itself, or a ZipMap's input (the
    probabilities before they are zipped into dicts). ``class_labels`` are the label output's values in
    the order of the score columns, when they are not simply 0..C-1.
    """

    name: str
    value: str
    zipmap: bool = False
    label: str | None = None
    note: str | None = None
    class_labels: tuple[int, ...] | None = None


def _element(type_text: str) -> str:
    return type_text.removeprefix("tensor(").removesuffix(")")


def is_decision(type_text: str) -> bool:
    """An integer or boolean tensor: a label, a one-hot or a threshold, never scores."""
    return type_text.startswith("tensor(") and _element(type_text).startswith(DECISION_TYPES)


def refuse_as_scores(name: str, type_text: str, path: Path) -> ModelError:
    """The error for an output that cannot be read as float32 scores ``[N, classes]``."""
    if is_decision(type_text):
        return ModelError(
            f"expected a float32 output (scores of shape [N, classes]), found {type_text} in output "
            f"{name!r}: an integer or boolean output is a decision (a label, a one-hot or a "
            "threshold) with no gradient and no margin to measure",
            path=path,
            hint="export the model's float32 logits (or probabilities) instead of its decision",
        )
    if type_text == STRING_ZIPMAP_TYPE:
        return ModelError(
            f"output {name!r} is a ZipMap keyed by class names ({type_text}); gate reads scores as "
            "columns 0..C-1 and cannot order string keys",
            path=path,
            hint="convert with zipmap=False (options={id(model): {'zipmap': False}} in skl2onnx) "
            "or train on integer labels 0..C-1",
        )
    return ModelError(
        f"expected a float32 output (scores of shape [N, classes]), found {type_text} in output {name!r}",
        path=path,
        hint="cast the output to float32 in the graph: gate reads scores as float32",
    )


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {name: node for node in model.graph.node for name in node.output if name}


def _zipmap_input(model: onnx.ModelProto, name: str, path: Path) -> str:
    node = _producers(model).get(name)
    if node is None or node.op_type != "ZipMap":
        raise ModelError(
            f"output {name!r} is a sequence of maps, but no ZipMap node produces it; gate reads such "
            "outputs only from a ZipMap",
            path=path,
        )
    return node.input[0]


def _class_labels(model: onnx.ModelProto, label: str) -> tuple[int, ...] | None:
    """The label output's values in column order, read from the classifier node behind it (if known)."""
    producers = _producers(model)
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    node = producers.get(label)
    while node is not None and node.op_type in _LABEL_PASSTHROUGH:
        node = producers.get(node.input[0])
    if node is None:
        return None
    for attribute in node.attribute:
        if attribute.name in _CLASS_LABEL_ATTRIBUTES:
            return tuple(int(v) for v in attribute.ints)
    if node.op_type == "ArrayFeatureExtractor" and node.input[0] in initializers:  # skl2onnx's MLP
        classes = numpy_helper.to_array(initializers[node.input[0]])
        if classes.dtype.kind in "iu":
            return tuple(int(v) for v in classes.reshape(-1))
    return None


def _note(outputs: Sequence[Any], chosen: str, label: str | None, how: str) -> str:
    note = f"the model has outputs {[o.name for o in outputs]}: gate judges {chosen!r} ({how})"
    if label is not None:
        note += f"; {label!r} is the model's own decision, compared in export_parity"
    return note


def choose_output(
    session: ort.InferenceSession, model: onnx.ModelProto, wanted: str | None, path: Path
) -> OutputChoice:
    """The output gate judges: ``wanted``, else the one float tensor, else a ZipMap of int keys.

    Raises:
        ModelError: ``wanted`` is not an output, or is no scores; or no output (or more than one) could
            be the scores, in which case the message names them and asks for ``output``.
    """
    outputs = session.get_outputs()
    names = [o.name for o in outputs]
    types = {o.name: o.type for o in outputs}
    if wanted is not None:
        if wanted not in types:
            raise ModelError(
                f"output {wanted!r} is not an output of the model; its outputs are {names}", path=path
            )
        chosen, how = wanted, "chosen with output"
    else:
        floats = [name for name in names if types[name] in SCORES_TYPES]
        zipmaps = [name for name in names if types[name] in (ZIPMAP_TYPE, STRING_ZIPMAP_TYPE)]
        if len(floats) > 1:
            raise ModelError(
                f"the model has {len(floats)} float outputs {floats}; gate cannot tell which are the scores",
                path=path,
                hint="name the scores with output: in gate-model.yaml (or --model-output NAME)",
            )
        if floats:
            chosen, how = floats[0], "the float scores"
        elif len(zipmaps) == 1:
            chosen, how = zipmaps[0], "the ZipMap of class probabilities"
        elif len(names) == 1:
            raise refuse_as_scores(names[0], types[names[0]], path)
        else:
            raise ModelError(
                f"none of the model's outputs {[f'{n}: {types[n]}' for n in names]} is float32 scores "
                "(a tensor(float) [N, classes] or a ZipMap of int keys)",
                path=path,
                hint="export the model's float32 scores as an output, or name one with output:",
            )
    if types[chosen] == ZIPMAP_TYPE:
        value, zipmap = _zipmap_input(model, chosen, path), True
    elif types[chosen] in SCORES_TYPES:
        value, zipmap = chosen, False
    else:
        raise refuse_as_scores(chosen, types[chosen], path)
    labels = [n for n in names if n != chosen and is_decision(types[n])]
    label = labels[0] if len(labels) == 1 else None
    note = None if len(names) == 1 else _note(outputs, chosen, label, how)
    class_labels = None if label is None else _class_labels(model, label)
    return OutputChoice(chosen, value, zipmap, label, note, class_labels)


def zipmap_scores(rows: Any, path: Path) -> np.ndarray:
    """A ZipMap's list of ``{class: probability}`` dicts as float32 ``[N, C]``, columns by class 0..C-1."""
    rows = list(rows)
    if not rows:
        return np.zeros((0, 0), np.float32)
    keys = sorted(rows[0])
    if keys != list(range(len(keys))):
        raise ModelError(
            f"the ZipMap's keys are {keys[:10]}{' …' if len(keys) > 10 else ''}; gate reads a ZipMap's "
            f"classes as columns and needs the keys 0..{len(keys) - 1}",
            path=path,
            hint="train on labels 0..C-1, or convert with zipmap=False",
        )
    try:
        return np.array([[row[k] for k in keys] for row in rows], dtype=np.float32)
    except (KeyError, TypeError) as error:
        raise ModelError(f"the ZipMap's rows do not all have the keys {keys}: {error}", path=path) from error


def graph_for_value(model: onnx.ModelProto, value: str) -> onnx.ModelProto:
    """A copy of ``model`` whose one output is ``value``, with only the nodes that compute it.

    Nodes are kept by backward reachability from ``value``; names a kept node's subgraphs read from the
    outer graph count as its inputs. Initializers and value infos no kept node uses are dropped.
    """
    producers = {name: index for index, node in enumerate(model.graph.node) for name in node.output if name}
    needed, pending, kept = set(), [value], set()
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        index = producers.get(name)
        if index is None or index in kept:
            continue
        kept.add(index)
        pending.extend(_node_reads(model.graph.node[index]))
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    graph = pruned.graph
    nodes = [node for index, node in enumerate(model.graph.node) if index in kept]
    del graph.node[:]
    graph.node.extend(nodes)
    initializers = [tensor for tensor in model.graph.initializer if tensor.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    known = {info.name: info for info in (*model.graph.output, *model.graph.value_info)}
    output = onnx.ValueInfoProto()
    output.CopyFrom(known.get(value, onnx.helper.make_empty_tensor_value_info(value)))
    del graph.output[:]
    graph.output.append(output)
    value_info = [info for info in model.graph.value_info if info.name in needed and info.name != value]
    del graph.value_info[:]
    graph.value_info.extend(value_info)
    # The model's inputs stay (the session is fed all of them); initializers listed as inputs only if used.
    constants = {tensor.name for tensor in model.graph.initializer}
    inputs = [info for info in model.graph.input if info.name not in constants or info.name in needed]
    del graph.input[:]
    graph.input.extend(inputs)
    return pruned


def _node_reads(node: onnx.NodeProto) -> list[str]:
    reads = [name for name in node.input if name]
    for attribute in node.attribute:
        for subgraph in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
            for inner in subgraph.node:
                reads.extend(_node_reads(inner))
    return reads
