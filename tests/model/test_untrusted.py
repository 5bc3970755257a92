"""Nothing in an untrusted artifact runs while gate loads it (gate/model/untrusted.py).

The ``.pt2`` families are the routes by which ``torch.export.load`` unpickles: the new layout's sample
inputs, pickled weights and constants, its legacy ``model.pt`` members, and the old layout's
``serialized_*`` members, with the payload as a raw pickle or nested in a ``torch.save`` zip. Each would
run its payload without the guard (``test_each_family_really_runs_code_when_trusted``); with it, the file is
refused and the payload's marker file never appears.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from gate.errors import ModelError
from gate.model import ModelSpec, load_model
from gate.model.untrusted import nothing_may_run


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


@pytest.fixture(scope="module")
def clean_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    module = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    path = tmp_path_factory.mktemp("pt2") / "clean.pt2"
    torch.export.save(torch.export.export(module, (torch.rand(2, 1, 8, 8),)), str(path))
    return path


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
    prefix = next(n for n in zipfile.ZipFile(clean).namelist() if n.endswith("archive_format")).rsplit(
        "/", 1
    )[0]
    return rewritten(clean, target, lambda n, d: d, extra=[(f"{prefix}/data/weights/model.pt", payload)])


def new_layout_legacy_constants(clean: Path, target: Path, payload: bytes) -> Path:
    prefix = next(n for n in zipfile.ZipFile(clean).namelist() if n.endswith("archive_format")).rsplit(
        "/", 1
    )[0]
    return rewritten(clean, target, lambda n, d: d, extra=[(f"{prefix}/data/constants/model.pt", payload)])


def new_layout_custom_object_constant(clean: Path, target: Path, payload: bytes) -> Path:
    """A constant whose config says "custom object": torch reads it with ``pickle.loads``."""
    prefix = next(n for n in zipfile.ZipFile(clean).namelist() if n.endswith("archive_format")).rsplit(
        "/", 1
    )[0]

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
    prefix = next(n for n in zipfile.ZipFile(clean).namelist() if n.endswith("archive_format")).rsplit(
        "/", 1
    )[0]

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


def load(path: Path, trust_pickle: bool = False):
    return load_model(ModelSpec(str(path), trust_pickle=trust_pickle), work_dir=path.parent / "work")


# pickle.loads reads a raw pickle only; every other route reads both payload forms.
RAW_PICKLE_ONLY = {"new-layout opaque-object constant"}
CASES = [
    (f, p)
    for f in sorted(FAMILIES)
    for p in sorted(PAYLOADS)
    if f not in RAW_PICKLE_ONLY or p == "raw pickle"
]


@pytest.mark.parametrize(("family", "payload"), CASES)
def test_a_hostile_pt2_is_refused_and_nothing_runs(tmp_path, clean_pt2, family, payload):
    marker = tmp_path / "pwned"
    path = FAMILIES[family](clean_pt2, tmp_path / "hostile.pt2", PAYLOADS[payload](marker))
    with pytest.raises(ModelError, match=r"would run code from the file while loading: it holds a pickled"):
        load(path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore:This version of file is deprecated")
@pytest.mark.parametrize(
    "family",
    ["new-layout sample inputs", "new-layout pickled weight, no suffix", "old-layout constants .json",
     "old-layout state dict .pt", "new-layout opaque-object constant"],
)  # fmt: skip
def test_each_family_really_runs_code_when_trusted(tmp_path, clean_pt2, family):
    """The families are real exploits: with --trust-pickle, torch runs the payload (so the refusal matters)."""
    marker = tmp_path / "pwned"
    payload = "raw pickle" if family in RAW_PICKLE_ONLY else "torch.save zip"
    path = FAMILIES[family](clean_pt2, tmp_path / "hostile.pt2", PAYLOADS[payload](marker))
    with contextlib.suppress(ModelError):  # the payload returns a file object where torch expects tensors
        load(path, trust_pickle=True)
    assert marker.exists()


def test_a_plain_pt2_still_loads_and_runs(clean_pt2):
    model = load(clean_pt2)
    assert model.scores(torch.rand(3, 1, 8, 8)).shape == (3, 10)


def test_the_guard_refuses_unpickling_programs_and_native_libraries(tmp_path):
    plain_tensors = torch_saved({"w": torch.ones(2)})
    with nothing_may_run(tmp_path / "m", "model"):
        assert torch.equal(torch.load(io.BytesIO(plain_tensors), weights_only=True)["w"], torch.ones(2))
    for action, what in [
        (lambda: pickle.loads(pickle.dumps(threading.Lock)), "a pickled Python object"),
        (lambda: torch.load(io.BytesIO(plain_tensors), weights_only=False), "a pickled Python object"),
        (lambda: subprocess.run([sys.executable, "-c", "0"], check=False), "a program"),
        (lambda: __import__("ctypes").CDLL("libc.so.6"), "a native library"),
    ]:
        with pytest.raises(ModelError, match=f"it holds {what}"), nothing_may_run(tmp_path / "m", "model"):
            action()
    assert pickle.loads(pickle.dumps(threading.Lock)) is threading.Lock  # outside the guard: untouched


def test_a_refusal_swallowed_by_the_loader_is_still_reported(tmp_path):
    def loader_that_swallows_everything() -> None:
        with contextlib.suppress(BaseException):  # what a careless loader does
            pickle.loads(pickle.dumps(threading.Lock))
        raise RuntimeError("later failure")

    with pytest.raises(ModelError, match="a pickled Python object"), nothing_may_run(tmp_path / "m", "model"):
        loader_that_swallows_everything()


def test_the_guard_is_per_thread(tmp_path):
    results: list[object] = []
    inside, done = threading.Event(), threading.Event()

    def other_thread() -> None:
        inside.wait(5)
        results.append(pickle.loads(pickle.dumps(threading.Lock)))
        done.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with nothing_may_run(tmp_path / "m", "model"):
        inside.set()
        done.wait(5)
    worker.join(5)
    assert results == [threading.Lock]
