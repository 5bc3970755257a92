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
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from gate.errors import ModelError
from gate.model import ModelSpec, load_model
from gate.model.untrusted import nothing_may_run

from .hostile_pt2 import FAMILIES, PAYLOADS, RAW_PICKLE_ONLY, clean_program, torch_saved


@pytest.fixture(scope="module")
def clean_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clean_program(tmp_path_factory.mktemp("pt2") / "clean.pt2")


def load(path: Path, trust_pickle: bool = False):
    return load_model(ModelSpec(str(path), trust_pickle=trust_pickle), work_dir=path.parent / "work")


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


def test_torch_s_cpp_unpickler_is_refused_inside_a_guard_and_untouched_outside(tmp_path, monkeypatch):
    import gate.model.untrusted as untrusted

    with nothing_may_run(tmp_path / "m", "model"):
        pass  # installs the wrapper
    calls: list[bytes] = []
    monkeypatch.setattr(untrusted, "_cpp_unpickler", lambda data: calls.append(data) or "object")
    assert torch._C._pickle_load_obj(b"outside") == "object" and calls == [b"outside"]
    with (
        pytest.raises(ModelError, match="a pickled TorchScript object"),
        nothing_may_run(tmp_path / "m", "model"),
    ):
        torch._C._pickle_load_obj(b"inside")
    assert calls == [b"outside"]
