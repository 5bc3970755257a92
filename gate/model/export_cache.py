"""Reuse an earlier export of the same model: the dynamo exporter takes minutes on a large network, and a
re-run, a second policy or a second shard of the same model would otherwise pay it every time.

An export is identified by a key over everything that decides the exported graph: the module's
parameters and buffers (values, not only shapes), the source code of every module class it is built from
and its ``repr`` (hyper-parameters), the file of a file-based source, the chosen output, the per-sample
input shape, the exporter and opset asked for, and the versions of torch, onnx, onnxscript and gate.
Two places are searched: the report folder's ``model/`` (kept between runs, see
``gate/report/folder.py``) and, opt-in, a user cache folder (``--export-cache DIR`` or
``GATE_EXPORT_CACHE``) shared by every report folder.

A hit is never trusted blindly: its files must hash to the digest recorded beside them, and the cached
session must reproduce the source module on probe inputs (``under_test``); otherwise gate exports again.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from gate.model.export import ExportInfo
from gate.model.files import sha256_of_files

CACHE_ENV = "GATE_EXPORT_CACHE"
RECORD_NAME = "export.json"
RECORD_VERSION = 1
_LIBRARIES = ("torch", "onnx", "onnxscript", "gate-ml")

logger = logging.getLogger(__name__)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def _class_sources(module: nn.Module) -> Iterable[str]:
    """The qualified name and source-file digest of each class the module is built from."""
    files: dict[str, str] = {}
    for sub in module.modules():
        cls = type(sub)
        name = f"{cls.__module__}.{cls.__qualname__}"
        try:
            source = inspect.getsourcefile(cls)
        except (TypeError, OSError):
            source = None
        if source and source not in files and os.path.isfile(source):
            files[source] = hashlib.sha256(Path(source).read_bytes()).hexdigest()
        yield f"{name}@{files.get(source or '', 'no-source')}"


def module_digest(module: nn.Module | torch.export.ExportedProgram) -> str:
    """A digest of what the module computes: its tensors' values, its classes' code and its structure."""
    digest = hashlib.sha256()
    if isinstance(module, torch.export.ExportedProgram):
        digest.update(str(module.graph_module.code).encode())
        state = dict(module.state_dict)
        state.update({f"constant:{k}": v for k, v in module.constants.items() if isinstance(v, torch.Tensor)})
    else:
        if isinstance(module, torch.jit.ScriptModule):
            digest.update(str(module.inlined_graph).encode())
        for line in sorted(set(_class_sources(module))):
            digest.update(line.encode())
        digest.update(repr(module).encode())
        state = module.state_dict(keep_vars=False)
    for name in sorted(state):
        tensor = state[name]
        digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)}".encode())
        digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


def export_key(
    module: nn.Module | torch.export.ExportedProgram,
    *,
    source_sha256: str | None,
    output: str | None,
    input_shape: tuple[int, ...],
    exporter: str,
    opset: int | None,
) -> str:
    """The key of one export (see the module docstring for what it covers)."""
    parts = {
        "module": module_digest(module),
        "source": source_sha256,
        "output": output,
        "input_shape": list(input_shape),
        "exporter": exporter,
        "opset": opset,
        "libraries": {name: _version(name) for name in _LIBRARIES},
        "record": RECORD_VERSION,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CachedExport:
    """An export recorded in a folder: ``model.onnx`` (and ``model.onnx.data``) beside ``export.json``."""

    folder: Path

    @property
    def model(self) -> Path:
        return self.folder / "model.onnx"

    def read(self, key: str) -> ExportInfo | None:
        """The recorded export if it is for ``key`` and its files still hash to the recorded digest."""
        try:
            record = json.loads((self.folder / RECORD_NAME).read_text(encoding="utf-8"))
            if record.get("key") != key or record.get("version") != RECORD_VERSION:
                return None
            external = tuple(self.folder / name for name in record["external_files"])
            files = [self.model, *external]
            if not all(f.is_file() and not f.is_symlink() for f in files):
                return None
            if sha256_of_files(files) != record["sha256"]:
                logger.warning(
                    "the cached export in %s does not match its digest; exporting again", self.folder
                )
                return None
            return ExportInfo(
                path=self.model,
                sha256=record["sha256"],
                exporter=record["exporter"],
                opset=int(record["opset"]),
                external_files=external,
                seconds=float(record["seconds"]),
                note=record.get("note"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, key: str, info: ExportInfo) -> None:
        """Record ``info`` (whose files are already in this folder) for ``key``."""
        record = {
            "version": RECORD_VERSION,
            "key": key,
            "sha256": info.sha256,
            "exporter": info.exporter,
            "opset": info.opset,
            "external_files": [f.name for f in info.external_files],
            "seconds": info.seconds,
            "note": info.note,
        }
        _write_atomically(self.folder / RECORD_NAME, json.dumps(record, indent=2).encode())

    def forget(self) -> None:
        (self.folder / RECORD_NAME).unlink(missing_ok=True)


def _write_atomically(path: Path, content: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "wb") as stream:
        stream.write(content)
    os.replace(temporary, path)


def user_cache_folder(given: Path | None) -> Path | None:
    """The opt-in shared cache: ``--export-cache`` or ``GATE_EXPORT_CACHE``; None when neither is set."""
    if given is not None:
        return Path(given)
    value = os.environ.get(CACHE_ENV, "").strip()
    return Path(value) if value else None


def copy_export(info: ExportInfo, folder: Path) -> ExportInfo:
    """Copy an export's files into ``folder`` (as ``model.onnx`` and ``model.onnx.data``)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.onnx"
    copied = []
    for source in info.external_files:
        destination = folder / source.name
        shutil.copyfile(source, destination)
        copied.append(destination)
    shutil.copyfile(info.path, target)
    return ExportInfo(
        target, info.sha256, info.exporter, info.opset, tuple(copied), info.seconds, info.note, info.cached
    )


def store_in_user_cache(root: Path, key: str, info: ExportInfo) -> None:
    """Add a fresh export to the shared cache (a failure to write it is logged, never fatal)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
        copy_export(info, staging)
        CachedExport(staging).write(key, info)
        final = root / key
        if final.exists():
            shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
    except OSError as error:
        logger.warning("could not store the export in the cache %s: %s", root, error)


def lookup(key: str, work_dir: Path, user_cache: Path | None) -> ExportInfo | None:
    """An earlier export for ``key``, in the report folder or the user cache (copied into ``work_dir``)."""
    here = CachedExport(work_dir).read(key)
    if here is not None:
        return _as_cached(here, "the report folder")
    if user_cache is None:
        return None
    shared = CachedExport(user_cache / key).read(key)
    if shared is None:
        return None
    copied = copy_export(shared, work_dir)
    CachedExport(work_dir).write(key, copied)
    return _as_cached(copied, f"the export cache {user_cache}")


def _as_cached(info: ExportInfo, where: str) -> ExportInfo:
    return ExportInfo(
        info.path, info.sha256, info.exporter, info.opset, info.external_files, info.seconds, info.note, where
    )
