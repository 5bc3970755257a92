"""Hostile ``.pt2`` archives: one builder per route by which ``torch.export.load`` unpickles, and the
payloads they carry (shared by tests/model/test_untrusted.py and tests/test_fuzz_models.py)."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


def clean_program(path: Path) -> Path:
    """A plain ``.pt2`` of a linear digits model: what every hostile variant starts from."""
    module = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    torch.export.save(torch.export.export(module, (torch.rand(2, 1, 8, 8),)), str(path))
    return path


class WritesAFile:
    """Unpickling this calls ``open(marker, "w")``: the file appears if anything unpickles it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def torch_saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def rewritten(clean: Path, target: Path, change: Callable[[str, bytes], bytes | None], extra=()) -> Path:
    """A copy of ``clean`` with each member passed through ``change`` (None drops it), plus ``extra``."""
    with zipfile.ZipFile(clean) as source, zipfile.ZipFile(target, "w") as out:
        for item in source.infolist():
            data = change(item.filename, source.read(item))
            if data is not None:
                out.writestr(item.filename, data)
        for name, data in extra:
            out.writestr(name, data)
    return target


def top_folder(clean: Path) -> str:
    """The folder a new-layout archive keeps its members in (the one holding ``archive_format``)."""
    with zipfile.ZipFile(clean) as archive:
        return next(n for n in archive.namelist() if n.endswith("archive_format")).rsplit("/", 1)[0]


def member(clean: Path, suffix: str) -> bytes:
    with zipfile.ZipFile(clean) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith(suffix)))


def new_layout_sample_inputs(clean: Path, target: Path, payload: bytes) -> Path:
    return rewritten(clean, target, lambda n, d: payload if n.endswith("sample_inputs/model.pt") else d)


def new_layout_pickled_weight(clean: Path, target: Path, payload: bytes) -> Path:
    """``use_pickle: true`` in the weights config: the member (named ``weight_0``, no suffix) is torch.load-ed."""

    def change(name: str, data: bytes) -> bytes:
        if name.endswith("model_weights_config.json"):
            config = json.loads(data)
            config["config"]["1.weight"]["use_pickle"] = True
            return json.dumps(config).encode()
        return payload if name.endswith("weights/weight_0") else data

    return rewritten(clean, target, change)


def new_layout_legacy_weights(clean: Path, target: Path, payload: bytes) -> Path:
    """The legacy ``data/weights/model.pt`` member takes precedence over the config and is unpickled."""
    prefix = top_folder(clean)
    return rewritten(clean, target, lambda n, d: d, extra=[(f"{prefix}/data/weights/model.pt", payload)])


def new_layout_legacy_constants(clean: Path, target: Path, payload: bytes) -> Path:
    prefix = top_folder(clean)
    return rewritten(clean, target, lambda n, d: d, extra=[(f"{prefix}/data/constants/model.pt", payload)])


def new_layout_custom_object_constant(clean: Path, target: Path, payload: bytes) -> Path:
    """A constant whose config says "custom object": torch reads it with its C++ object unpickler."""
    prefix = top_folder(clean)

    def change(name: str, data: bytes) -> bytes:
        if name.endswith("model_constants_config.json"):
            return json.dumps(
                {
                    "config": {
                        "obj": {
                            "path_name": "custom_obj_0",
                            "is_param": False,
                            "use_pickle": True,
                            "tensor_meta": None,
                        }
                    }
                }
            ).encode()
        return data

    return rewritten(clean, target, change, extra=[(f"{prefix}/data/constants/custom_obj_0", payload)])


def old_layout(slot: str) -> Callable[[Path, Path, bytes], Path]:
    """The pre-2.6 layout (``serialized_*`` members at the top, beside an ``archive_format`` marker)."""

    def build(clean: Path, target: Path, payload: bytes) -> Path:
        from torch._export.serde.schema import SCHEMA_VERSION

        program = torch.export.load(str(clean))
        members = {
            "serialized_exported_program.json": member(clean, "models/model.json"),
            "serialized_state_dict.pt": torch_saved(dict(program.state_dict)),
            "serialized_constants.pt": torch_saved({}),
            "serialized_example_inputs.pt": torch_saved(((torch.rand(1, 1, 8, 8),), {})),
        }
        members[slot] = payload
        if slot.endswith(".json") and slot != "serialized_exported_program.json":
            members.pop(slot.replace(".json", ".pt"))
        with zipfile.ZipFile(target, "w") as out:
            out.writestr("archive_format", "pt2")
            out.writestr("version", ".".join(map(str, SCHEMA_VERSION)))
            for name, data in members.items():
                out.writestr(name, data)
        return target

    return build


def new_layout_opaque_object_constant(clean: Path, target: Path, payload: bytes) -> Path:
    """An "opaque object" constant: torch reads it with a plain ``pickle.loads``."""
    prefix = top_folder(clean)

    def change(name: str, data: bytes) -> bytes:
        if name.endswith("model_constants_config.json"):
            entry = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}
            return json.dumps({"config": {"obj": entry}}).encode()
        return data

    return rewritten(clean, target, change, extra=[(f"{prefix}/data/constants/opaque_obj_0", payload)])


FAMILIES = {
    "new-layout sample inputs": new_layout_sample_inputs,
    "new-layout pickled weight, no suffix": new_layout_pickled_weight,
    "new-layout legacy weights member": new_layout_legacy_weights,
    "new-layout legacy constants member": new_layout_legacy_constants,
    "new-layout custom-object constant": new_layout_custom_object_constant,
    "new-layout opaque-object constant": new_layout_opaque_object_constant,
    "old-layout constants .json": old_layout("serialized_constants.json"),
    "old-layout constants .pt": old_layout("serialized_constants.pt"),
    "old-layout state dict .json": old_layout("serialized_state_dict.json"),
    "old-layout state dict .pt": old_layout("serialized_state_dict.pt"),
    "old-layout example inputs": old_layout("serialized_example_inputs.pt"),
}
PAYLOADS = {
    "torch.save zip": lambda marker: torch_saved({"x": WritesAFile(marker)}),
    "raw pickle": lambda marker: pickle.dumps({"x": WritesAFile(marker)}),
}

# pickle.loads reads a raw pickle only; every other route reads both payload forms.
RAW_PICKLE_ONLY = {"new-layout opaque-object constant"}
