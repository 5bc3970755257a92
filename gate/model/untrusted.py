"""While gate loads an artifact it does not trust, nothing in it may run, whichever of torch's code paths
reads it: no unpickler may resolve a Python global, no native library may be loaded, no process started.

A scan of an archive's member names cannot know every route by which a loader unpickles: ``torch.export.load``
alone has four (``torch.load`` falling back to ``weights_only=False``, ``pickle.loads`` for constants,
torch's C++ object unpickler, and the legacy layout's ``serialized_*`` members), and a future release may
add a fifth. So the guard sits below the loader: Python's audit hooks see every ``find_class`` of every
``pickle.Unpickler`` (torch's weights-only unpickler never calls it, so plain tensors still load), every
``ctypes`` library load and every process start, and refuse them while the guard is active on this thread.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate.errors import ModelError

# Audit events (https://docs.python.org/3/library/audit_events.html) that mean "code from the file is
# about to run", with what the refusal names.
_REFUSED_EVENTS = {
    "pickle.find_class": "a pickled Python object",
    "ctypes.dlopen": "a native library",
    "ctypes.dlsym": "a native library",
    "os.system": "a shell command",
    "os.exec": "a program",
    "os.posix_spawn": "a program",
    "os.spawn": "a program",
    "os.fork": "a new process",
    "os.forkpty": "a new process",
    "subprocess.Popen": "a program",
}


class _Refused(BaseException):
    """Raised inside the loader. A ``BaseException``: torch catches ``Exception`` in places and falls back
    to a full unpickle, which must not be given the chance."""


@dataclass
class _Guard:
    path: Path
    refused: list[str] = field(default_factory=list)


_active: contextvars.ContextVar[_Guard | None] = contextvars.ContextVar("gate_untrusted_load", default=None)
_hook_lock = threading.Lock()
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    guard = _active.get()
    if guard is None or event not in _REFUSED_EVENTS:
        return
    detail = ".".join(str(a) for a in args[:2]) if event == "pickle.find_class" else str(args[0])[:200]
    guard.refused.append(f"{_REFUSED_EVENTS[event]} ({detail})")
    raise _Refused(guard.refused[-1])


def _install_hook() -> None:
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit)  # hooks cannot be removed; it does nothing outside a guard
            _hook_installed = True


_cpp_unpickler: Any = None  # torch's own, behind the wrapper


def _install_cpp_guard(torch: Any) -> None:
    """Put the refusing wrapper in front of torch's C++ unpickler once, for good: outside a guard it
    passes straight through, so there is nothing to restore and no race between threads."""
    global _cpp_unpickler
    with _hook_lock:
        current = getattr(torch._C, "_pickle_load_obj", None)
        if current is not None and current is not _refuse_cpp_unpickling:
            _cpp_unpickler = current
            torch._C._pickle_load_obj = _refuse_cpp_unpickling


def _refuse_cpp_unpickling(*args: Any, **kwargs: Any) -> Any:
    # torch's C++ unpickler (custom script objects in .pt2 constants) does not go through Python's
    # pickle, so the audit hook would not see it. Another thread, outside any guard, keeps torch's own.
    guard = _active.get()
    if guard is None and _cpp_unpickler is not None:
        return _cpp_unpickler(*args, **kwargs)
    if guard is not None:
        guard.refused.append("a pickled TorchScript object")
    raise _Refused("a pickled TorchScript object")


@contextmanager
def nothing_may_run(path: Path, what: str) -> Iterator[None]:
    """Load ``path`` (a ``what``) inside this block: anything it would run is refused as a ``ModelError``."""
    import torch

    _install_hook()
    guard = _Guard(path)
    token = _active.set(guard)
    _install_cpp_guard(torch)
    try:
        yield
    except _Refused:
        pass  # reported below, with everything that was refused
    except BaseException:
        if not guard.refused:
            raise
        # else the loader swallowed the refusal and failed later: the refusal is what to report
    finally:
        _active.reset(token)
    if guard.refused:
        raise ModelError(
            f"this {what} would run code from the file while loading: it holds {guard.refused[0]}",
            path=path,
            hint="gate loads untrusted artifacts without running anything from them; pass --trust-pickle "
            "only if you trust where this file comes from",
        )
