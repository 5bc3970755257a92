"""Export a PyTorch module to ONNX (dynamo exporter by default) as one checked, hashed artifact."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from gate.errors import ModelError
from gate.model.onnx_file import read_onnx
from gate.model.spec import Exporter, ExporterName

INPUT_NAME = "input"
OUTPUT_NAME = "logits"

# The TorchScript exporter's opset when it stands in for a failed dynamo export: 17 has
# scaled_dot_product_attention's pieces and LayerNormalization (opset 11 fails on every ViT).
FALLBACK_OPSET = 17

# Protobuf cannot hold more than 2 GiB; above this the weights go to a ``.onnx.data`` file beside the model.
INLINE_LIMIT_BYTES = 1536 * 1024**2

logger = logging.getLogger(__name__)

# Loggers that report, at warning level, what the exception gate raises already says (or harmless gaps such
# as "torchvision is not installed"); the export error message carries the cause.
_NOISY_LOGGERS = (
    "torch.onnx",
    "torch.export",
    "torch._export",
    "torch.fx.experimental.symbolic_shapes",
    "torch._dynamo",
)


@dataclass(frozen=True)
class ExportInfo:
    """What an export produced: the files (hashed together), the exporter and the opset really used."""

    path: Path
    sha256: str
    exporter: ExporterName
    opset: int
    external_files: tuple[Path, ...]
    seconds: float
    note: str | None = None
    """Why the exporter used is not the one asked for (a dynamo failure the TorchScript exporter mended)."""
    cached: str | None = None
    """Where an earlier identical export was reused from (``gate/model/export_cache.py``), None if exported now."""


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence known, harmless exporter chatter so that a normal run and warnings-as-errors tests stay clean."""
    noisy = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in noisy]
    for logger in noisy:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
            warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", message=r".*The feature will be removed.*")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # The TorchScript exporter cannot read a ScriptModule's signature and says so; the export is fine.
            warnings.filterwarnings("ignore", message=r"no signature found for .*ScriptMethod")
            yield
    finally:
        for logger, level in zip(noisy, levels, strict=True):
            logger.setLevel(level)


def _root_cause(error: BaseException) -> str:
    """The innermost cause, on one or two lines: torch.onnx wraps it in pages of generic advice."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    lines = [line for line in text.splitlines() if line.strip()][:2]
    return f"{type(error).__name__}: {' '.join(lines)[:400]}"


# Causes an exporter gives, and what to try: (pattern in the root cause, advice).
_ADVICE: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"data.dependent|GuardOnDataDependent|Could not guard on", re.I),
        "the model branches on tensor values, which torch.export cannot trace: use --exporter torchscript "
        "(it traces the branch the example takes), or write the branch with torch.where",
    ),
    (
        re.compile(r"opset|Unsupported: ONNX export of operator|is not supported in opset", re.I),
        f"an operator has no ONNX form at this opset: give a newer one (--opset {FALLBACK_OPSET} or 18)",
    ),
    (
        re.compile(r"Constraints violated|dynamic_shapes|specializ", re.I),
        "the batch axis cannot be dynamic for this model (it is fixed by a reshape or a view): make the "
        "reshape use -1 or x.shape[0], or use --exporter torchscript",
    ),
)


def export_advice(cause: str, exporter: ExporterName, *, tried_both: bool = False) -> str:
    """What to try after ``exporter`` failed with ``cause`` (a root-cause line); ``tried_both`` when the
    TorchScript fallback failed too, so suggesting it again would send the user in a circle."""
    for pattern, advice in _ADVICE:
        if pattern.search(cause):
            return advice
    if tried_both:
        return (
            "check that the model's forward runs on an input of the given shape in Python, then try a "
            "different --opset"
        )
    other = "torchscript" if exporter == "dynamo" else "dynamo"
    return f"try --exporter {other}, or a different --opset"


def _batch_of_two(example_input: torch.Tensor) -> torch.Tensor:
    # torch.export specialises a dimension of size 1, so the batch axis needs at least two samples.
    if example_input.shape[0] >= 2:
        return example_input[:2]
    return example_input[:1].expand(2, *example_input.shape[1:]).clone()


def _parameter_bytes(module: Any) -> int:
    if not isinstance(module, nn.Module):
        module = module.module() if hasattr(module, "module") else None
    if module is None:
        return 0
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _run_exporter(
    module: Any, example: torch.Tensor, path: Path, exporter: Exporter, opset: int | None, inline: bool
) -> None:
    if exporter == "dynamo":
        dynamic = (
            None if isinstance(module, torch.export.ExportedProgram) else ({0: torch.export.Dim("batch")},)
        )
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=True,
            dynamic_shapes=dynamic,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            external_data=not inline,
            verbose=False,
        )
    else:
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )


def _infer_and_save(path: Path, inline: bool) -> None:
    """Run strict shape inference and store the inferred shapes in the file itself."""
    model = onnx.load(str(path), load_external_data=True)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as error:
        raise ModelError(f"ONNX shape inference failed on the exported model: {error}", path=path) from error
    if inline:
        onnx.save(inferred, str(path))


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send file descriptor 1 to stderr: the TorchScript exporter writes its IR graph (pages of it) to stdout
    from C++ when it fails, which would corrupt ``gate check --json``'s output."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _export_with(
    module: Any, example: torch.Tensor, path: Path, exporter: ExporterName, opset: int | None, inline: bool
) -> str | None:
    """Run one exporter; the root cause of its failure, or None when it wrote ``path``."""
    try:
        with _quiet_exporter(), _stdout_to_stderr(), torch.no_grad():
            _run_exporter(module, example, path, exporter, opset, inline)
    except ModelError:
        raise
    except Exception as error:
        logger.debug("the %s exporter failed", exporter, exc_info=True)
        for leftover in (path, Path(f"{path}.data")):
            leftover.unlink(missing_ok=True)
        return _root_cause(error)
    return None


def export_to_onnx(
    module: nn.Module | torch.export.ExportedProgram,
    example_input: torch.Tensor,
    path: Path,
    *,
    exporter: Exporter = "auto",
    opset: int | None = None,
) -> ExportInfo:
    """Export ``module`` to ``path`` with a dynamic batch axis, check it and hash the file(s) it wrote.

    ``auto`` is the dynamo exporter, and the TorchScript exporter (at ``opset`` or ``FALLBACK_OPSET``)
    when dynamo fails; ``note`` then says so. The model is written self-contained unless its weights
    exceed ``INLINE_LIMIT_BYTES``; then the ``.onnx.data`` file stays beside it and is part of the hash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(module, nn.Module):
        module = module.eval()
    inline = _parameter_bytes(module) <= INLINE_LIMIT_BYTES
    example = _batch_of_two(example_input.detach().cpu())
    started = time.perf_counter()
    first: ExporterName = "torchscript" if exporter == "torchscript" else "dynamo"
    cause = _export_with(module, example, path, first, opset, inline)
    used, note = first, None
    can_fall_back = exporter == "auto" and not isinstance(module, torch.export.ExportedProgram)
    if cause is not None and can_fall_back:
        fallback_opset = opset or FALLBACK_OPSET
        second = _export_with(module, example, path, "torchscript", fallback_opset, inline)
        if second is None:
            used = "torchscript"
            note = (
                f"the dynamo exporter failed ({cause[:200]}); the TorchScript exporter at opset "
                f"{fallback_opset} exported the model instead"
            )
            logger.warning("%s", note)
        else:
            raise ModelError(
                f"the dynamo and TorchScript exporters could not export the model: dynamo: {cause}; "
                f"torchscript (opset {fallback_opset}): {second}",
                path=path,
                hint=export_advice(cause, "dynamo", tried_both=True),
            )
    elif cause is not None:
        raise ModelError(
            f"the {first} exporter could not export the model: {cause}",
            path=path,
            hint=export_advice(cause, first),
        )
    _infer_and_save(path, inline)
    _, onnx_file = read_onnx(path, with_data=False)
    seconds = time.perf_counter() - started
    logger.info("exported %s with the %s exporter (opset %d) in %.1f s", path, used, onnx_file.opset, seconds)
    return ExportInfo(
        path, onnx_file.sha256, used, onnx_file.opset, onnx_file.external_files, seconds, note=note
    )
