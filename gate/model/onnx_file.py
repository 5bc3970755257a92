"""Reading an ONNX file safely: external data confined to the model's folder and checked before loading."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import TensorProto

from gate.errors import ModelError
from gate.model.files import checked_file, sha256_of_files


@dataclass(frozen=True)
class OnnxFile:
    """A validated ONNX model on disk: the file, its external-data files and their joint SHA-256."""

    path: Path
    external_files: tuple[Path, ...]
    sha256: str
    opset: int | None


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _graph_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graph_tensors(subgraph)


def external_data_files(model: onnx.ModelProto, model_path: Path) -> tuple[Path, ...]:
    """The external-data files a model refers to, each proven to lie inside the model's folder."""
    folder = model_path.resolve().parent
    files: dict[Path, None] = {}
    for tensor in _graph_tensors(model.graph):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ModelError(
                f"tensor {tensor.name!r} keeps its data at {location!r}; expected a file inside the "
                f"model's folder {folder}, found a location outside it",
                path=model_path,
                hint="external data must sit next to the model file (no absolute paths, no '..')",
            )
        files[checked_file(target, f"external data of tensor {tensor.name!r}")] = None
    return tuple(sorted(files))


def _model_opset(model: onnx.ModelProto) -> int | None:
    """The default-domain opset; None for a graph of other domains' operators only (XGBoost's converter
    writes a lone TreeEnsembleClassifier with just the ai.onnx.ml opset)."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    if all(node.domain not in ("", "ai.onnx") for node in model.graph.node):
        return None
    raise ModelError("the ONNX model declares no default-domain opset")


def read_onnx(path: Path, *, with_data: bool = True) -> tuple[onnx.ModelProto, OnnxFile]:
    """Load and check an ONNX model; external data is vetted before a byte of it is read."""
    checked_file(path, "ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:
        raise ModelError(
            f"expected an ONNX protobuf file, found one that cannot be parsed ({type(error).__name__}: {error})",
            path=path,
        ) from error
    if not model.graph.node:
        raise ModelError("expected an ONNX model with a graph, found an empty or non-ONNX file", path=path)
    external = external_data_files(model, path)
    try:
        onnx.checker.check_model(str(path))
    except Exception as error:
        raise ModelError(f"the ONNX model fails onnx.checker: {error}", path=path) from error
    if with_data and external:
        onnx.load_external_data_for_model(model, str(path.resolve().parent))
    info = OnnxFile(path, external, sha256_of_files([path, *external]), _model_opset(model))
    return model, info
