"""Turn a ``ModelSpec.source`` into a PyTorch module without ever unpickling what the user did not trust."""

from __future__ import annotations

import contextlib
import importlib
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gate.errors import ModelError
from gate.model.files import checked_file
from gate.model.spec import ModelSpec, source_kind
from gate.model.untrusted import nothing_may_run
from gate.references import cwd_importable

__all__ = [
    "ExportedModule",
    "TorchSource",
    "apply_weights",
    "load_factory",
    "load_torch_source",
    "source_kind",
]

PICKLE_HINT = "pass --trust-pickle only if you trust where this file comes from, or save a state dict instead"
WEIGHTS_PICKLE_HINT = (
    "gate reads weights without unpickling: save them with torch.save(model.state_dict(), path) or as "
    ".safetensors; --trust-pickle exists for a pickled model you trust: give the file as the model "
    "itself (--model FILE --trust-pickle, without a factory)"
)
# How torch.load(weights_only=True) names the global it refused (torch 2.4 and later).
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


@dataclass(frozen=True)
class TorchSource:
    """A loaded PyTorch model: what to run (``module``), what to export and the kind of source it came from."""

    kind: str
    module: nn.Module
    exportable: nn.Module | torch.export.ExportedProgram
    example_input: torch.Tensor | None = None


def load_factory(reference: str) -> nn.Module:
    """Import ``package.module:factory`` (the current directory importable) and call it."""
    module_name, _, attribute = reference.partition(":")
    with cwd_importable():  # for the factory's own (lazy) imports too
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ModelError(
                f"cannot import module {module_name!r} for factory {reference!r}: {error}",
                hint="run gate from the folder that contains the package, or install it",
            ) from error
        factory = getattr(module, attribute, None)
        if factory is None:
            raise ModelError(f"module {module_name!r} has no attribute {attribute!r} (factory {reference!r})")
        if not callable(factory):
            raise ModelError(f"expected {reference!r} to be callable, found a {type(factory).__name__}")
        try:
            built = factory()
        except Exception as error:
            raise ModelError(f"factory {reference!r} raised {type(error).__name__}: {error}") from error
    if not isinstance(built, nn.Module):
        raise ModelError(
            f"expected factory {reference!r} to return a torch.nn.Module, found {type(built).__name__}"
        )
    return built


def _weights_refusal(path: Path, error: Exception) -> ModelError:
    """Say what torch's weights-only loader refused, in gate's words rather than torch's half-sentence."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    refused = _REFUSED_GLOBAL.findall(text)
    if refused or "Weights only load failed" in text:
        what = f" that refers to {', '.join(dict.fromkeys(refused))}" if refused else ""
        return ModelError(
            f"the weights file is not a plain state dict: it is a pickle of Python objects{what} "
            "(for example a whole model saved with torch.save(model)), and loading it would run code "
            "from the file",
            path=path,
            hint=WEIGHTS_PICKLE_HINT,
        )
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), type(error).__name__)
    return ModelError(
        f"the weights file is not a plain state dict: torch.load with weights_only=True cannot read it "
        f"({type(error).__name__}: {last[:300]})",
        path=path,
        hint="save weights with torch.save(model.state_dict(), path) or as .safetensors",
    )


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    checked_file(path, "weights file")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            with nothing_may_run(path, "weights file"):  # a backstop: safetensors parses, never unpickles
                return load_file(str(path), device="cpu")
        except ModelError:
            raise
        except Exception as error:
            raise ModelError(
                f"expected a safetensors file, found an unreadable one: {error}", path=path
            ) from error
    try:
        with nothing_may_run(path, "weights file"):  # weights_only refuses globals; this is the backstop
            state = torch.load(path, map_location="cpu", weights_only=True)
    except ModelError:
        raise
    except Exception as error:
        raise _weights_refusal(path, error) from error
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"expected a state dict of tensors, found {type(state).__name__}", path=path)
    return state


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:10])
    return shown + (f" … ({len(keys)} in all)" if len(keys) > 10 else "")


def apply_weights(module: nn.Module, path: Path) -> None:
    """Load a state dict into ``module``, listing missing, unexpected and mis-shaped keys on mismatch."""
    state = _read_state_dict(path)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = [
        f"{key} (module {list(expected[key].shape)}, file {list(state[key].shape)})"
        for key in sorted(set(expected) & set(state))
        if expected[key].shape != state[key].shape
    ]
    problems = [
        f"missing keys: {_listed(missing)}" if missing else "",
        f"unexpected keys: {_listed(unexpected)}" if unexpected else "",
        f"shape mismatches: {_listed(mis_shaped)}" if mis_shaped else "",
    ]
    if any(problems):
        raise ModelError(
            "the weights do not match the module; " + "; ".join(p for p in problems if p),
            path=path,
        )
    module.load_state_dict(state, strict=True)


def _load_pickle(path: Path, trust_pickle: bool) -> nn.Module:
    if not trust_pickle:
        raise ModelError(
            "refusing to load a pickled model: unpickling can execute arbitrary code",
            path=path,
            hint=PICKLE_HINT,
        )
    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ModelError(
            f"cannot load the pickled model: {type(error).__name__}: {error}", path=path
        ) from error
    if not isinstance(loaded, nn.Module):
        raise ModelError(f"expected a pickled torch.nn.Module, found {type(loaded).__name__}", path=path)
    return loaded


class ExportedModule(nn.Module):
    """``ExportedProgram.module()`` behind a module whose ``train()``/``eval()`` only set a flag.

    torch refuses ``train()`` and ``eval()`` on an exported program's module ("Calling train() is not
    supported yet"), and every gradient check puts its model in eval mode. The program's behaviour was
    fixed when it was exported, so there is nothing to switch: gate evaluates it as exported (dropout or
    batch statistics kept in the program show up in ``model_sanity``).
    """

    def __init__(self, program_module: nn.Module) -> None:
        super().__init__()
        self.program_module = program_module

    def train(self, mode: bool = True) -> ExportedModule:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.program_module(x)


def _load_exported_program(path: Path, trust_pickle: bool) -> TorchSource:
    guard = contextlib.nullcontext() if trust_pickle else nothing_may_run(path, "torch.export archive")
    try:
        with guard, warnings.catch_warnings():
            # torch warns about the old layout; gate's answer is the load's outcome, not a warning.
            warnings.filterwarnings("ignore", message="This version of file is deprecated")
            program = torch.export.load(str(path))
            module = program.module()
    except ModelError:
        raise
    except Exception as error:
        raise ModelError(
            f"cannot load the torch.export program: {type(error).__name__}: {error}", path=path
        ) from error
    example = None
    if program.example_inputs and program.example_inputs[0]:
        first = program.example_inputs[0][0]
        example = first if isinstance(first, torch.Tensor) else None
    return TorchSource("torch.export", ExportedModule(module), program, example)


def load_torch_source(spec: ModelSpec, kind: str) -> TorchSource:
    """Load a non-ONNX source; ``weights`` apply to factory and trusted-pickle models (the caller has
    refused the options a kind does not use, see ``spec.refuse_unused_options``)."""
    path = Path(spec.source)
    if kind == "torch.export":
        return _load_exported_program(path, spec.trust_pickle)
    if kind == "torchscript":
        try:
            # TorchScript's own unpickler takes TorchScript types only; the guard is the backstop for any
            # route that reaches Python's pickle or loads a native library.
            with nothing_may_run(path, "TorchScript archive"), warnings.catch_warnings():
                # TorchScript is deprecated upstream, but archives in the wild are what gate must accept.
                warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated")
                module = torch.jit.load(str(path), map_location="cpu")
        except ModelError:
            raise
        except Exception as error:
            raise ModelError(f"cannot load the TorchScript archive: {error}", path=path) from error
    elif kind == "factory":
        module = load_factory(spec.source)
    else:
        module = _load_pickle(path, spec.trust_pickle)
    if spec.weights is not None:
        apply_weights(module, Path(spec.weights))
    module = module.eval()
    return TorchSource(kind, module, module)
