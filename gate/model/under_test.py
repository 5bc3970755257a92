"""``ModelUnderTest``: the one object checks use, whatever the model's source, and ``load_model`` that builds it."""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from gate.errors import CheckError, ModelError
from gate.model.export import ExportInfo, export_to_onnx
from gate.model.export_cache import CachedExport, export_key, lookup, store_in_user_cache, user_cache_folder
from gate.model.files import sha256_of_files
from gate.model.onnx_file import read_onnx
from gate.model.outputs import (
    SCORES_TYPES,
    OutputChoice,
    choose_output,
    graph_for_value,
    refuse_as_scores,
    zipmap_scores,
)
from gate.model.preprocess import Preprocess, gate_layout_shape, make_preprocess, with_preprocessing
from gate.model.session import CUDA, open_session, torch_device
from gate.model.sources import TorchSource, load_torch_source
from gate.model.spec import (
    FIXED_EXPORTER,
    ModelSpec,
    given_options,
    refuse_unused_options,
    source_kind,
)
from gate.model.squashing import (
    UNDONE,
    BeforeSquashing,
    LogProbabilities,
    Squashing,
    graph_logits,
    graph_squashing,
    looks_like_probabilities,
    probability_evidence,
)
from gate.model.torch_outputs import select_output
from gate.model.twin import build_twin

DEFAULT_BATCH_SIZE = 256
# Tolerances for the twin against the session: float32 kernels differ by rounding only.
TWIN_ATOL = 1e-4
TWIN_RTOL = 1e-3
# A graph that computes in half precision is compared in it: (atol, rtol) scaled to float16's
# resolution (2^-10, 100 times float32's tolerance relative to its own 2^-23 would be too loose; this is
# about 10 units in the last place of a logit near 1).
PRECISION_TOLERANCE: dict[str, tuple[float, float]] = {
    "float32": (TWIN_ATOL, TWIN_RTOL),
    "float16": (1e-2, 1e-2),
    "bfloat16": (8e-2, 8e-2),
}
# The session's input element types gate feeds, cast at the boundary from its float32 tensors.
INPUT_TYPES: dict[str, type[np.floating]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}

logger = logging.getLogger(__name__)


def _random_inputs(count: int, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Inputs in [0, 1] from a private generator, so loading a model leaves the global RNG (and seeds) alone."""
    return torch.rand((count, *input_shape), generator=torch.Generator().manual_seed(0))


def _shape_text(shape: tuple[int | str, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


class ModelUnderTest:
    """A model as gate tests it: the ONNX Runtime session (the deployed artifact) and a differentiable module.

    ``scores`` runs the session; ``gradient_model`` is the PyTorch source (or, for an ONNX-only model, the
    twin that interprets the graph) with gate's preprocessing in front. When the outputs are squashed by a
    final sigmoid or softmax (``output_squashing``), ``gradient_model`` returns the logits before it, so
    that gradient checks do not stall on saturated probabilities (``gate/model/squashing.py``); when they
    are probabilities gate cannot trace back to logits, it returns their logarithm.

    A model with several outputs (a converted scikit-learn model: a label and probabilities) is judged
    on one of them, ``output`` (``gate/model/outputs.py``); ``output_note`` says which and why, and
    ``decisions`` reads the model's own label output, ``label_output``, where there is one.
    """

    def __init__(
        self,
        *,
        session: ort.InferenceSession,
        onnx_path: Path,
        onnx_sha256: str,
        source_kind: str,
        input_shape: tuple[int, ...],
        device: torch.device,
        torch_module: nn.Module | None,
        normalize: Preprocess | None,
        class_names: tuple[str, ...] | None = None,
        gradient_unavailable_reason: str | None = None,
        export_info: ExportInfo | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        output_squashing: Squashing | None = None,
        logits_module: nn.Module | None = None,
        output: OutputChoice | None = None,
        probabilities_from: str | None = None,
        logits_described: str | None = None,
    ) -> None:
        self.onnx_path = onnx_path
        self.onnx_sha256 = onnx_sha256
        self.source_kind = source_kind
        self.input_shape = input_shape
        self.device = device
        self.export_info = export_info
        self.batch_size = batch_size
        self.provider: str = session.get_providers()[0]
        self.gradient_unavailable_reason = gradient_unavailable_reason
        self.twin_agreement: str | None = None
        """The inputs on which the twin of an ONNX-only model last agreed with the session, for the report."""
        self._session = session
        self._input_name = session.get_inputs()[0].name
        self._input_dtype = INPUT_TYPES.get(session.get_inputs()[0].type, np.float32)
        self.precision: str = "float32"
        """The lowest float precision the graph computes in (``graph_precision``); sets the twin's tolerance."""
        first = session.get_outputs()[0].name
        choice = output if output is not None else OutputChoice(first, first)
        self._output_name = choice.name
        self._scores_value = choice.value
        self._zipmap = choice.zipmap
        self.output_note: str | None = choice.note
        """Which output gate judges and why, for a model with several outputs; None for one output."""
        self.label_output: str | None = choice.label
        """The model's own label output (int64 class labels), compared with the scores in export parity."""
        self._class_labels = choice.class_labels
        self._logits_described = logits_described
        batch_dim = session.get_inputs()[0].shape[0]
        self._fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self._normalize = normalize
        self.output_squashing = output_squashing
        self._module = (
            None
            if torch_module is None
            else with_preprocessing(torch_module, normalize, self._fixed_batch).to(device)
        )
        # The logits the gradient checks differentiate: the squashing's input where there is one to undo.
        self._logits_module = self._module
        if torch_module is not None and logits_module is not None:
            self._logits_module = with_preprocessing(logits_module, normalize, self._fixed_batch).to(device)
        self.num_classes = 0
        probe = self._probe_scores()
        self.num_classes = int(probe.shape[1])
        if class_names is not None and len(class_names) != self.num_classes:
            raise ModelError(
                f"class_names lists {len(class_names)} names but the model outputs {self.num_classes} logits",
                path=onnx_path,
            )
        self.class_names = class_names
        self._probabilities_from = probabilities_from or self._named_probabilities(probe)
        self._log_probabilities = False
        if (
            self._probabilities_from is not None
            and self._module is not None
            and self._logits_module is self._module
            and output_squashing != "log_softmax"
        ):
            # Probabilities with no logits to recover: their logarithm keeps the attacks' margins.
            self._logits_module = LogProbabilities(self._module)
            self._log_probabilities = True
        self._check_logits_module()

    # ----------------------------------------------------------------- the deployed artifact
    def _probe_scores(self) -> torch.Tensor:
        probe = _random_inputs(2, self.input_shape)
        out = self._run_batches(probe)
        if out.dim() != 2 or out.shape[0] != 2 or out.shape[1] < 2:
            raise ModelError(
                f"expected the model to output logits of shape [N, classes] with at least 2 classes; "
                f"for an input of shape {_shape_text(tuple(probe.shape))} it returned {_shape_text(tuple(out.shape))}",
                path=self.onnx_path,
            )
        return out

    def _named_probabilities(self, probe: torch.Tensor) -> str | None:
        """An ONNX output named like probabilities whose probe rows lie in [0, 1] and sum to 1."""
        if self.source_kind != "onnx" or "prob" not in self._output_name.lower():
            return None
        if not bool(looks_like_probabilities(probe).all()):
            return None
        return f"an output named {self._output_name!r} whose rows lie in [0, 1] and sum to 1"

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise ModelError(
                f"input shape mismatch: the model expects {_shape_text(('N', *self.input_shape))}, "
                f"got {_shape_text(tuple(x.shape))}",
                path=self.onnx_path,
            )

    def _check_logits(self, logits: torch.Tensor, count: int, producer: str) -> None:
        expected = (count, self.num_classes)
        if tuple(logits.shape) != expected:
            raise ModelError(
                f"{producer} returned {_shape_text(tuple(logits.shape))}, expected logits {_shape_text(expected)}",
                path=self.onnx_path,
            )
        bad = ~torch.isfinite(logits).all(dim=1)
        if bad.any():
            first = int(bad.nonzero()[0])
            raise ModelError(
                f"{producer} returned non-finite logits (NaN or inf) for {int(bad.sum())} of {count} "
                f"input(s), the first at index {first}; expected finite logits",
                path=self.onnx_path,
            )

    def _preprocess(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32)
        return x if self._normalize is None else self._normalize(x)

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (gate's layout, the policy's input range) as the graph's input: the model card's scale,
        mean/std, channel order and layout applied. Each step is increasing or a permutation, so the
        bounds of a box map to the bounds of its image (``gate/certify``)."""
        self._check_input(x)
        return self._preprocess(x)

    def scores_graph(self) -> onnx.ModelProto:
        """The deployed graph reduced to what computes the judged scores (a ZipMap's input, say), with its
        weights; read from the file each time, so nothing holds it between checks."""
        proto = onnx.load(str(self.onnx_path), load_external_data=True)
        outputs = [output.name for output in proto.graph.output]
        return proto if outputs == [self._scores_value] else graph_for_value(proto, self._scores_value)

    def _run_numpy(self, x: torch.Tensor, name: str | None = None) -> torch.Tensor:
        """The session's output ``name`` (the scores by default) for ``x``, as a CPU tensor."""
        name = name or self._output_name
        feed = np.ascontiguousarray(self._preprocess(x).cpu().numpy(), dtype=self._input_dtype)
        count = len(feed)
        if self._fixed_batch is not None and count < self._fixed_batch:
            # A model exported with a fixed batch size gets zero-padded batches; the padding is dropped again.
            padding = np.zeros((self._fixed_batch - count, *feed.shape[1:]), self._input_dtype)
            feed = np.concatenate([feed, padding])
        try:
            (out,) = self._session.run([name], {self._input_name: feed})
        except Exception as error:
            raise ModelError(
                f"ONNX Runtime failed on a batch of shape {_shape_text(feed.shape)}: {error}",
                path=self.onnx_path,
            ) from error
        if name != self._output_name:
            return self._label_tensor(out, len(feed))[:count]
        if self._zipmap:
            return torch.from_numpy(zipmap_scores(out, self.onnx_path))[:count]
        return torch.from_numpy(np.asarray(out, dtype=np.float32))[:count]

    def _label_tensor(self, out: object, rows: int) -> torch.Tensor:
        labels = np.asarray(out)
        if labels.dtype.kind not in "iub" or labels.size != rows:
            raise ModelError(
                f"expected the label output {self.label_output!r} to hold one integer label per input, "
                f"found {labels.dtype} of shape {_shape_text(labels.shape)} for {rows} input(s)",
                path=self.onnx_path,
            )
        return torch.from_numpy(labels.reshape(-1).astype(np.int64))

    def _run_io_binding(self, x: torch.Tensor) -> torch.Tensor:
        """Run a CUDA tensor through a CUDA session without copying it through host memory."""
        feed = self._preprocess(x).contiguous()
        out = torch.empty((len(feed), self.num_classes), dtype=torch.float32, device=feed.device)
        binding = self._session.io_binding()
        device_id = feed.device.index or 0
        binding.bind_input(
            self._input_name, "cuda", device_id, np.float32, tuple(feed.shape), feed.data_ptr()
        )
        binding.bind_output(
            self._output_name, "cuda", device_id, np.float32, tuple(out.shape), out.data_ptr()
        )
        # torch and ORT work on different CUDA streams: the input must be ready before, the output after.
        torch.cuda.current_stream(feed.device).synchronize()
        binding.synchronize_inputs()
        self._session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return out

    def _run_batches(self, x: torch.Tensor) -> torch.Tensor:
        size = self._fixed_batch or self.batch_size
        # I/O binding needs the number of classes to allocate the output, so the load-time probe goes via numpy.
        # A ZipMap is a sequence of maps, which I/O binding cannot hold: it goes via numpy too.
        use_binding = (
            self.provider == CUDA
            and x.is_cuda
            and self._fixed_batch is None
            and self.num_classes > 0
            and not self._zipmap
            and self._input_dtype is np.float32
            and self._session.get_outputs()[0].type == "tensor(float)"
        )
        run = self._run_io_binding if use_binding else self._run_numpy
        outputs = [run(chunk) for chunk in torch.split(x, size)]
        return torch.cat(outputs) if outputs else torch.empty((0, self.num_classes))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the ONNX Runtime session for ``x`` (input range, preprocessing applied here), on ``x.device``."""
        self._check_input(x)
        with torch.no_grad():
            logits = self._run_batches(x.detach())
        self._check_logits(logits, len(x), "the ONNX Runtime session")
        return logits.to(x.device)

    def decisions(self, x: torch.Tensor) -> torch.Tensor | None:
        """The model's own label output for ``x`` as int64 class indices on ``x.device``, or None if it has
        none. Labels are mapped to the score columns through the classifier's class labels where the graph
        names them (a model trained on labels 3, 5, 7 has columns 0, 1, 2)."""
        if self.label_output is None:
            return None
        self._check_input(x)
        size = self._fixed_batch or self.batch_size
        with torch.no_grad():
            chunks = [self._run_numpy(chunk, self.label_output) for chunk in torch.split(x.detach(), size)]
        labels = torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.int64)
        return self._label_indices(labels).to(x.device)

    def _label_indices(self, labels: torch.Tensor) -> torch.Tensor:
        known = self._class_labels
        if known is None or len(known) != self.num_classes or list(known) == list(range(len(known))):
            return labels
        column = {label: index for index, label in enumerate(known)}
        unknown = sorted({int(v) for v in labels.tolist()} - set(column))
        if unknown:
            raise ModelError(
                f"the label output {self.label_output!r} returned {unknown[:5]}, which are not among the "
                f"model's class labels {list(known)}",
                path=self.onnx_path,
            )
        return torch.tensor([column[int(v)] for v in labels.tolist()], dtype=torch.int64)

    # ----------------------------------------------------------------- the differentiable module
    @property
    def gradient_model(self) -> nn.Module | None:
        """A differentiable module mapping input-range x to logits, or ``None`` (see the reason attribute).

        For squashed outputs these are the logits before the final sigmoid or softmax, not the outputs;
        for probabilities gate cannot trace back to logits, their logarithm (``logits_from`` says which).
        """
        return self._logits_module if self.gradient_unavailable_reason is None else None

    @property
    def has_source_module(self) -> bool:
        """Whether there is a PyTorch module to compare the session with: the source, or an ONNX model's twin."""
        return self._module is not None

    @property
    def scores_are_probabilities(self) -> bool:
        """Whether the session's scores are probabilities: a ZipMap, a final Softmax or Sigmoid (or skl2onnx's
        ``Concat(1 - σ(z), σ(z))``), a LinearClassifier or TreeEnsembleClassifier with a probability
        post_transform, or an ONNX output named like probabilities whose values are in [0, 1] and sum to 1."""
        return self._probabilities_from is not None

    @property
    def probabilities_from(self) -> str | None:
        """What shows that the scores are probabilities, in words (None when they are not known to be)."""
        return self._probabilities_from

    @property
    def logits_recovered(self) -> bool:
        """Whether the gradient model returns logits gate recovered, or log-probabilities, rather than the
        model's outputs as they are: logits from behind a final squashing, a final LogSoftmax, or the
        logarithm of probabilities. False without a gradient model, and for a model whose outputs gate
        returns unchanged (logits, for most models: nothing needed recovering)."""
        if self.gradient_model is None:
            return False
        return self._logits_module is not self._module or self.output_squashing == "log_softmax"

    @property
    def logits_from(self) -> str:
        """What the gradient model returns, in words for reports."""
        if self._log_probabilities:
            return (
                "the logarithm of the model's probabilities (log-probabilities: a cross-entropy or DLR "
                "margin on them equals the one on a softmax's logits)"
            )
        if self._logits_described is not None and self._logits_module is not self._module:
            return self._logits_described
        if self.output_squashing in UNDONE and self._logits_module is not self._module:
            return f"the input of the model's final {self.output_squashing} (the logits before it)"
        if self.output_squashing == "log_softmax":
            return "the model's log-probabilities (a log_softmax keeps the logits' losses)"
        return "the model's outputs"

    def _check_logits_module(self) -> None:
        """Run the logits module once: a squashing gate cannot look behind withdraws the gradients."""
        if self._logits_module is self._module or self._logits_module is None:
            return
        try:
            with torch.no_grad():
                self._logits_module(_random_inputs(2, self.input_shape).to(self.device))
        except ModelError as error:
            self.gradient_unavailable_reason = error.message

    def require_gradient_model(self) -> nn.Module:
        model = self.gradient_model
        if model is None:
            raise CheckError(
                f"gradient-based checks need a differentiable model: {self.gradient_unavailable_reason}"
            )
        return model

    def straight_through_model(self, probe: torch.Tensor) -> nn.Module:
        """BPDA (Athalye et al. 2018): the twin of the deployed graph with every non-differentiable op
        (rounding, sign, integer casts, quantisation, comparison-and-select) the identity in the backward
        pass, returning logits the way ``gradient_model`` does (behind a final squashing, or the logarithm
        of probabilities). Built from the exported graph, so a PyTorch source's ``detach()`` is not in it.

        The forward must equal the session's scores on ``probe`` within the graph's precision tolerance.

        Raises:
            ModelError: the twin cannot run the graph, or it disagrees with the session on ``probe``.
        """
        graph = self.scores_graph()
        twin = build_twin(graph, straight_through=True)
        scores_module = with_preprocessing(twin, self._normalize, self._fixed_batch).to(self.device)
        reference = self.scores(probe)
        with torch.no_grad():
            mirrored = scores_module(probe.to(self.device, torch.float32)).float().to(reference.device)
        disagreement = self._disagreement(mirrored, reference, *PRECISION_TOLERANCE[self.precision])
        if disagreement is not None:
            raise ModelError(
                f"the straight-through twin disagrees with the ONNX Runtime session on the probe inputs "
                f"({disagreement})",
                path=self.onnx_path,
            )
        found = graph_logits(graph, self._scores_value)
        if found is not None and found.build is not None:
            return with_preprocessing(found.build(twin), self._normalize, self._fixed_batch).to(self.device)
        if self._log_probabilities:
            return LogProbabilities(scores_module)
        return scores_module

    def source_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the source PyTorch module (the twin for an ONNX-only model), preprocessing included."""
        self._check_input(x)
        model = self._module
        if model is None:
            raise CheckError(f"no PyTorch module to compare against: {self.gradient_unavailable_reason}")
        with torch.no_grad():
            logits = torch.cat(
                [model(chunk.to(self.device, torch.float32)) for chunk in torch.split(x, self.batch_size)]
            )
        logits = logits.float()
        self._check_logits(logits, len(x), f"the {self.source_kind} PyTorch module")
        return logits.to(x.device)

    def _disagreement(
        self, mirrored: torch.Tensor, reference: torch.Tensor, atol: float, rtol: float
    ) -> str | None:
        """How a module's scores differ from the session's beyond ``atol + rtol·|logit|`` (a non-finite
        score always does), in words for the reason; None when they agree."""
        difference = (mirrored - reference).abs()
        if bool(torch.isfinite(mirrored).all()) and not bool(
            (difference > atol + rtol * reference.abs()).any()
        ):
            return None
        precision = "" if self.precision == "float32" else f", for a graph computing in {self.precision}"
        return f"max |difference| {float(difference.max()):.3g}, tolerance {atol:g} + {rtol:g}·|logit|{precision}"

    def verify_twin(
        self,
        x: torch.Tensor,
        on: str = "the given inputs",
        atol: float | None = None,
        rtol: float | None = None,
    ) -> None:
        """Compare the twin with the session on ``x`` (described by ``on``, for the reason and the report),
        within the tolerance of the graph's ``precision`` unless ``atol``/``rtol`` are given.

        A twin that disagrees, or fails on ``x``, is withdrawn: ``gradient_model`` becomes None and
        ``gradient_unavailable_reason`` says why. One that agrees records ``on`` in ``twin_agreement``.
        Only ONNX-only models have a twin; for other sources this does nothing (export parity is a check).

        Raises:
            ModelError: the session itself fails on ``x`` (the twin is then neither kept nor withdrawn).
        """
        if self.source_kind != "onnx" or self._module is None or self.gradient_unavailable_reason:
            return
        default_atol, default_rtol = PRECISION_TOLERANCE[self.precision]
        atol = default_atol if atol is None else atol
        rtol = default_rtol if rtol is None else rtol
        reference = self.scores(x)
        try:
            twin = self.source_scores(x)
        except ModelError as error:  # the twin fails where the session does not (non-finite logits, say)
            self.gradient_unavailable_reason = error.message
            return
        disagreement = self._disagreement(twin, reference, atol, rtol)
        if disagreement is not None:
            self.gradient_unavailable_reason = (
                f"the PyTorch twin disagrees with the ONNX Runtime session on {on} ({disagreement})"
            )
            logger.warning("%s", self.gradient_unavailable_reason)
            return
        self.twin_agreement = on if self.precision == "float32" else f"{on}, compared in {self.precision}"


# --------------------------------------------------------------------- loading
def _preprocess_for(spec: ModelSpec, input_shape: tuple[int, ...]) -> Preprocess | None:
    return make_preprocess(
        spec.mean, spec.std, input_shape, scale=spec.scale, channels=spec.channels, layout=spec.layout
    )


def _onnx_input_shape(
    session: ort.InferenceSession, spec: ModelSpec, example_input: torch.Tensor | None, path: Path
) -> tuple[int, ...]:
    as_declared = tuple(session.get_inputs()[0].shape[1:])
    if spec.layout == "NHWC" and len(as_declared) != 3:
        raise ModelError(
            f"layout NHWC is for image inputs [N, H, W, C], but the model's input is "
            f"{_shape_text(('N', *as_declared))}; remove it",
            path=path,
        )
    declared = gate_layout_shape(as_declared, spec.layout)  # channels first, as gate's data
    wanted = spec.input_shape or (tuple(example_input.shape[1:]) if example_input is not None else None)
    if wanted is None:
        if all(isinstance(d, int) and d > 0 for d in declared):
            return tuple(int(d) for d in declared)
        raise ModelError(
            f"the model's input {_shape_text(('N', *as_declared))} has symbolic dimensions; give input_shape",
            path=path,
        )

    def fits(shape: tuple[int | str, ...]) -> bool:
        return len(wanted) == len(shape) and all(
            not isinstance(d, int) or d <= 0 or d == w for d, w in zip(shape, wanted, strict=True)
        )

    if not fits(declared):
        described = "the given input shape" if spec.input_shape else "the evaluation data"
        layout_hint = None
        if spec.layout == "NCHW" and len(as_declared) == 3 and fits(gate_layout_shape(as_declared, "NHWC")):
            layout_hint = (
                "the model takes channels last: set layout: NHWC in the model card (or --layout NHWC)"
            )
        elif spec.layout == "NHWC" and fits(as_declared):
            layout_hint = "the model takes channels first: remove layout: NHWC"
        raise ModelError(
            f"input shape mismatch: the ONNX model's input is {_shape_text(('N', *as_declared))}"
            f"{' (channels last)' if spec.layout == 'NHWC' else ''}, but {described} is "
            f"{_shape_text(('N', *wanted))} (channels first, as gate reads images)",
            path=path,
            hint=layout_hint,
        )
    return tuple(wanted)


def _check_onnx_input(session: ort.InferenceSession, path: Path) -> None:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelError(
            f"expected one input (images or features), found inputs {[i.name for i in inputs]}", path=path
        )
    if inputs[0].type not in INPUT_TYPES:
        raise ModelError(
            f"expected a float input (float32, float16 or double), found {inputs[0].type}",
            path=path,
            hint="gate feeds images or features as floats; an integer input (uint8 images) needs a Cast "
            "to float at the start of the graph",
        )


def _check_onnx_signature(session: ort.InferenceSession, path: Path) -> None:
    """One float32 input and one float32 output (a torch source's export), refused at load time rather
    than failing mid-run."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(
            f"expected one input (images) and one output (logits), found inputs "
            f"{[i.name for i in inputs]} and outputs {[o.name for o in outputs]}",
            path=path,
        )
    _check_onnx_input(session, path)
    if outputs[0].type not in SCORES_TYPES:
        raise refuse_as_scores(outputs[0].name, outputs[0].type, path)


_PRECISION_OF: dict[int, str] = {
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.BFLOAT16: "bfloat16",
}


def graph_precision(graph: onnx.ModelProto) -> str:
    """The lowest float precision ``graph`` computes in: float16 or bfloat16 where its weights, input or
    casts use it (a model converted to half precision, with or without float32 I/O), else float32."""
    types = [initializer.data_type for initializer in graph.graph.initializer]
    types += [value.type.tensor_type.elem_type for value in graph.graph.input]
    types += [
        attribute.i for node in graph.graph.node if node.op_type == "Cast" for attribute in node.attribute
        if attribute.name == "to"
    ]  # fmt: skip
    found = {_PRECISION_OF[t] for t in types if t in _PRECISION_OF}
    return "bfloat16" if "bfloat16" in found else "float16" if found else "float32"


def _onnx_twin(
    graph: onnx.ModelProto, value: str
) -> tuple[nn.Module | None, str | None, nn.Module | None, Squashing | None, str | None]:
    """The twin of ``graph`` (or the reason there is none), the logits module behind its squashing, the
    squashing and the words for what that module returns."""
    twin, reason = None, None
    try:
        twin = build_twin(graph)
    except ModelError as error:
        reason = error.message
    found = graph_logits(graph, value)
    if found is None:
        return twin, reason, None, None, None
    logits = found.build(twin) if twin is not None and found.build is not None else None
    return twin, reason, logits, found.squashing, found.described


def _load_onnx_only(spec: ModelSpec, example_input: torch.Tensor | None) -> ModelUnderTest:
    path = Path(spec.source)
    proto, onnx_file = read_onnx(path)
    session = open_session(path, spec.device)
    _check_onnx_input(session, path)
    choice = choose_output(session, proto, spec.output, path)
    input_shape = _onnx_input_shape(session, spec, example_input, path)
    # The twin runs only what the judged scores need: ops that feed just the label (ArgMax, an
    # ArrayFeatureExtractor) or a ZipMap would otherwise withdraw it. The file was checked whole above.
    outputs = [output.name for output in proto.graph.output]
    graph = proto if outputs == [choice.value] else graph_for_value(proto, choice.value)
    twin, reason, logits, squashing, described = _onnx_twin(graph, choice.value)
    evidence = probability_evidence(graph, choice.value) or (
        "a ZipMap of class probabilities" if choice.zipmap else None
    )
    model = ModelUnderTest(
        session=session,
        onnx_path=path,
        onnx_sha256=onnx_file.sha256,
        source_kind="onnx",
        input_shape=input_shape,
        device=torch_device(spec.device, session.get_providers()[0]),
        torch_module=twin,
        normalize=_preprocess_for(spec, input_shape),
        class_names=spec.class_names,
        gradient_unavailable_reason=reason,
        output_squashing=squashing,
        logits_module=logits,
        output=choice,
        probabilities_from=evidence,
        logits_described=described,
    )
    model.precision = graph_precision(graph)
    if twin is not None:
        # A first comparison catches interpreter gaps before anything else runs; ``gate check`` compares
        # again on the first batch of the evaluation data (``runner._verify_twin``).
        if example_input is not None:
            probe, on = example_input[:64], f"the example input ({len(example_input[:64])} sample(s))"
        else:
            probe, on = _random_inputs(8, input_shape), "8 random inputs"
        try:
            model.verify_twin(probe, on=on)
        except ModelError as error:
            model.gradient_unavailable_reason = error.message
    return model


def _torch_input_shape(
    spec: ModelSpec, example_input: torch.Tensor | None, source: TorchSource
) -> tuple[int, ...]:
    given = [
        ("input_shape", spec.input_shape),
        ("the example input", None if example_input is None else tuple(example_input.shape[1:])),
    ]
    known = [(name, tuple(shape)) for name, shape in given if shape is not None]
    if len(known) == 2 and known[0][1] != known[1][1]:
        raise ModelError(
            f"input shape mismatch: input_shape is {_shape_text(known[0][1])} but the evaluation data has "
            f"samples of shape {_shape_text(known[1][1])}"
        )
    if known:
        return known[0][1]
    if source.example_input is not None:
        return tuple(source.example_input.shape[1:])
    raise ModelError(
        f"cannot tell the input shape of the {source.kind} model {spec.source!r}: expected input_shape "
        "(e.g. --input-shape 1,8,8 or input_shape in gate-model.yaml) or evaluation data, found neither"
    )


def _reproduces(session: ort.InferenceSession, module: nn.Module, example: torch.Tensor) -> bool:
    """Whether a cached export's session computes what ``module`` does on ``example`` (rounding aside)."""
    probe = torch.cat([example, _random_inputs(4, tuple(example.shape[1:])) * 2 - 1]).to(torch.float32)
    try:
        (out,) = session.run([session.get_outputs()[0].name], {session.get_inputs()[0].name: probe.numpy()})
        with torch.no_grad():
            expected = module(probe).float()
    except Exception:  # a stale file that no longer fits the module: export again
        return False
    got = torch.from_numpy(np.asarray(out, dtype=np.float32))
    return got.shape == expected.shape and bool(torch.allclose(got, expected, atol=1e-4, rtol=1e-3))


def _cached_or_exported(
    exportable: nn.Module | torch.export.ExportedProgram,
    module: nn.Module,
    example: torch.Tensor,
    *,
    key: str,
    work_dir: Path,
    user_cache: Path | None,
    exporter: str,
    opset: int | None,
    device: str,
) -> tuple[ExportInfo, ort.InferenceSession]:
    """An earlier identical export where one is found and still reproduces the module, else a new one."""
    cached = lookup(key, work_dir, user_cache)
    if cached is not None:
        session = open_session(cached.path, device)  # type: ignore[arg-type]
        if _reproduces(session, module, example):
            logger.info("reusing the export from %s (key %s)", cached.cached, key[:12])
            return cached, session
        logger.info("the cached export no longer reproduces the module; exporting again")
    record = CachedExport(work_dir)
    record.forget()
    path = work_dir / "model.onnx"
    Path(f"{path}.data").unlink(missing_ok=True)
    info = export_to_onnx(exportable, example, path, exporter=exporter, opset=opset)  # type: ignore[arg-type]
    record.write(key, info)
    if user_cache is not None:
        store_in_user_cache(user_cache, key, info)
    return info, open_session(path, device)  # type: ignore[arg-type]


def _load_torch(
    spec: ModelSpec,
    kind: str,
    work_dir: Path,
    example_input: torch.Tensor | None,
    export_cache: Path | None = None,
) -> ModelUnderTest:
    source = load_torch_source(spec, kind)
    input_shape = _torch_input_shape(spec, example_input, source)
    normalize = _preprocess_for(spec, input_shape)
    example = example_input if example_input is not None else _random_inputs(2, input_shape)
    example = example[:2].to(torch.float32).cpu()
    if normalize is not None:
        example = normalize(example)
    # One logits tensor out of a tuple, dict or ModelOutput, for the export and the gradient module alike.
    module, output_note = select_output(source.module, example, spec.output)
    exportable = source.exportable if module is source.module else module
    # torch.export cannot trace a ScriptModule, and an ExportedProgram is already what the dynamo exporter reads.
    exporter = FIXED_EXPORTER[kind][0] if kind in FIXED_EXPORTER else spec.exporter
    if exporter != spec.exporter and spec.exporter != "auto":
        logger.info("a %s source is exported with the %s exporter", kind, exporter)
    work_dir = Path(work_dir)
    key = export_key(
        exportable,
        source_sha256=None if kind == "factory" else sha256_of_files([Path(spec.source)]),
        output=spec.output,
        input_shape=input_shape,
        exporter=exporter,
        opset=spec.opset,
    )
    info, session = _cached_or_exported(
        exportable, module, example, key=key, work_dir=work_dir, user_cache=user_cache_folder(export_cache),
        exporter=exporter, opset=spec.opset, device=spec.device,
    )  # fmt: skip
    path = info.path
    _check_onnx_signature(session, path)
    # The export shows whether the module squashes its outputs, however its code spells the squashing.
    squashing = graph_squashing(onnx.load(str(path), load_external_data=False))
    kind_of_squashing = None if squashing is None else squashing[0]
    evidence = f"a final {kind_of_squashing}" if kind_of_squashing in UNDONE else None
    exported = session.get_outputs()[0].name
    return ModelUnderTest(
        session=session,
        onnx_path=path,
        onnx_sha256=info.sha256,
        source_kind=kind,
        input_shape=input_shape,
        device=torch_device(spec.device, session.get_providers()[0]),
        torch_module=module,
        normalize=normalize,
        class_names=spec.class_names,
        export_info=info,
        output_squashing=kind_of_squashing,
        logits_module=BeforeSquashing(module, kind_of_squashing) if kind_of_squashing in UNDONE else None,
        output=OutputChoice(exported, exported, note=output_note),
        probabilities_from=evidence,
    )


def load_model(
    spec: ModelSpec,
    *,
    work_dir: Path,
    example_input: torch.Tensor | None = None,
    export_cache: Path | None = None,
) -> ModelUnderTest:
    """Load any supported source into a ``ModelUnderTest``; torch sources are exported into ``work_dir``,
    or an identical earlier export there or in ``export_cache`` is reused (``gate/model/export_cache.py``).

    Options the source kind does not use are refused first (``spec.refuse_unused_options``).
    """
    kind = source_kind(spec)
    refuse_unused_options(kind, given_options(spec), spec.source)
    if kind == "onnx":
        return _load_onnx_only(spec, example_input)
    return _load_torch(spec, kind, Path(work_dir), example_input, export_cache)


def export_model(spec: ModelSpec, output: Path) -> ExportInfo:
    """Export a PyTorch source to ``output`` (``gate export``), proving the file opens in ONNX Runtime.

    The export is the same one ``gate check`` judges. A model too large to inline keeps its weights in
    ``<output>.data`` beside it, and the digest covers both files.
    """
    kind = source_kind(spec)
    if kind == "onnx":
        raise ModelError(
            "this is already an ONNX model; gate export converts PyTorch sources", path=spec.source
        )
    refuse_unused_options(kind, given_options(spec), spec.source)
    output = Path(output)
    if output.suffix != ".onnx":
        raise ModelError(f"the output must be an .onnx file; found {output.name!r}", path=output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".gate-export-") as work:
        info = _load_torch(spec, kind, Path(work), None).export_info
        if info is None:
            raise ModelError("the export produced no file information", path=spec.source)
        if not info.external_files:
            os.replace(info.path, output)
            return dataclasses.replace(info, path=output, sha256=sha256_of_files([output]))
        data = output.with_name(f"{output.name}.data")
        proto = onnx.load(str(info.path))
        onnx.save_model(
            proto, str(output), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name
        )
        return dataclasses.replace(
            info, path=output, external_files=(data,), sha256=sha256_of_files([output, data])
        )
