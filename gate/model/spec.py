"""What the user asked gate to load: the ``ModelSpec`` and the ``gate-model.yaml`` card that fills it."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gate.errors import ModelError, UsageError
from gate.model.files import archive_kind, checked_file
from gate.model.preprocess import CHANNEL_ORDERS, LAYOUTS, Channels, Layout
from gate.references import REFERENCE, is_reference

ExporterName = Literal["dynamo", "torchscript"]
# ``auto``: dynamo, and the TorchScript exporter where dynamo fails (``gate/model/export.py``).
Exporter = Literal["auto", "dynamo", "torchscript"]
Device = Literal["auto", "cpu", "cuda"]
SourceKind = Literal["factory", "onnx", "torchscript", "torch.export", "pickle"]

# ``package.module:factory``; checked before treating a source as a path.
FACTORY_PATTERN = REFERENCE

CARD_KEYS = (
    "source",
    "weights",
    "input_shape",
    "mean",
    "std",
    "scale",
    "channels",
    "layout",
    "class_names",
    "output",
)

# Options whose command-line flag is not ``--`` plus the key (``gate export`` already has an --output).
CLI_FLAGS = {"output": "--model-output", "scale": "--input-scale"}

KIND_NAMES: dict[str, str] = {
    "factory": "a package.module:factory",
    "onnx": "an ONNX model",
    "torchscript": "a TorchScript archive",
    "torch.export": "a torch.export program (.pt2)",
    "pickle": "a pickled model",
}

# The options a source kind does not use, and why. Each is refused rather than ignored: an ignored flag
# lets the user believe it took effect (``--weights`` beside an .onnx file would gate the file's own
# weights). ``input_shape``, ``mean``, ``std``, ``class_names`` and ``device`` apply to every kind.
UNUSED_OPTIONS: dict[str, dict[str, str]] = {
    "onnx": {
        "weights": "an ONNX file carries its own weights",
        "trust_pickle": "an ONNX file is read as protobuf and never unpickled",
        "exporter": "an ONNX model is run as it is, not exported",
        "opset": "an ONNX model is run as it is, not exported",
    },
    "torchscript": {
        "weights": "a TorchScript archive carries its own weights",
        "trust_pickle": "torch.jit.load only unpickles TorchScript types, so there is nothing to trust",
    },
    "torch.export": {"weights": "a torch.export program carries its own weights"},
    "factory": {
        "trust_pickle": "a factory's weights are read as safetensors or with weights_only=True, never "
        "unpickled (a whole pickled model is given as the model itself, with --trust-pickle)",
    },
}

# Kinds whose exporter is fixed; asking for the other one is refused (the same value is harmless).
FIXED_EXPORTER: dict[str, tuple[ExporterName, str]] = {
    "torchscript": ("torchscript", "torch.export cannot trace a ScriptModule"),
    "torch.export": ("dynamo", "the program is already what the dynamo exporter reads"),
}


@dataclass(frozen=True)
class ModelSpec:
    """Where the model comes from and how gate should feed it.

    ``mean``/``std`` are applied inside gate, so perturbation budgets stay in the input range the
    policy speaks about (usually [0, 1]); so are ``scale`` (inputs multiplied by it first: 255 for a
    model that expects 0..255, with ``mean``/``std`` then in those units), ``channels`` (``BGR``: the
    channel order reversed) and ``layout`` (``NHWC``: channels last, as tf2onnx exports), see
    ``gate/model/preprocess.py``. ``input_shape`` is per sample, without the batch axis, in gate's
    channels-first layout whatever ``layout`` says.
    ``output`` names the output of an ONNX file whose scores gate judges (``gate/model/outputs.py``);
    without it gate picks the one float output, or a ZipMap. For a PyTorch source it picks among the
    forward's outputs, a key, attribute or index (``gate/model/torch_outputs.py``).
    """

    source: str
    weights: Path | None = None
    trust_pickle: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_shape: tuple[int, ...] | None = None
    class_names: tuple[str, ...] | None = None
    exporter: Exporter = "auto"
    opset: int | None = None
    device: Device = "auto"
    output: str | None = None
    scale: float | None = None
    channels: Channels = "RGB"
    layout: Layout = "NCHW"

    def __post_init__(self) -> None:
        if self.exporter not in ("auto", "dynamo", "torchscript"):
            raise ModelError(f"exporter must be 'auto', 'dynamo' or 'torchscript', got {self.exporter!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ModelError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.input_shape is not None and not all(isinstance(d, int) and d > 0 for d in self.input_shape):
            raise ModelError(f"input_shape must be positive integers, got {self.input_shape!r}")
        if self.output is not None and (not isinstance(self.output, str) or not self.output):
            raise ModelError(f"output must be the name of one of the model's outputs, got {self.output!r}")
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise ModelError(f"scale must be a positive number such as 255, got {self.scale!r}")
        if self.channels not in CHANNEL_ORDERS:
            raise ModelError(f"channels must be one of {', '.join(CHANNEL_ORDERS)}, got {self.channels!r}")
        if self.layout not in LAYOUTS:
            raise ModelError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ModelError(f"std must be positive per channel, got {self.std!r}")
        lengths = {len(self.mean or ()), len(self.std or ())} - {0, 1}
        if len(lengths) > 1:
            raise ModelError(
                f"mean and std must have one value per channel each, got {len(self.mean)} and {len(self.std)}"
            )


def source_kind(spec: ModelSpec) -> SourceKind:
    """``factory``, ``onnx``, ``torchscript``, ``torch.export`` or ``pickle``, decided by content where possible."""
    path = Path(spec.source)
    if not path.exists() and FACTORY_PATTERN.match(spec.source):
        return "factory"
    if not path.exists():
        raise ModelError(
            "model file not found: expected an existing .onnx/.pt/.ts/.pt2/.pth file "
            "or a package.module:factory reference",
            path=path,
        )
    checked_file(path, "model file")
    if path.suffix.lower() == ".onnx":
        return "onnx"
    return archive_kind(path)  # type: ignore[return-value]


def own_weights_note(spec: ModelSpec) -> str | None:
    """The warning for a factory given without weights (None otherwise): its numbers are those of
    whatever weights the factory builds, random ones unless it loads trained weights itself."""
    if spec.weights is not None or not is_reference(str(spec.source)) or Path(str(spec.source)).exists():
        return None
    return (
        f"the factory {spec.source} was evaluated with the weights it builds itself (no --weights): random ones "
        "unless it loads trained weights; a policy can refuse this with require_weights: true"
    )


def given_options(spec: ModelSpec) -> dict[str, Any]:
    """The source-specific options of ``spec`` that differ from their defaults, i.e. that someone set."""
    given = {
        "weights": spec.weights,
        "opset": spec.opset,
        "trust_pickle": spec.trust_pickle or None,
        "output": spec.output,
    }
    given["exporter"] = None if spec.exporter == "auto" else spec.exporter
    return {key: value for key, value in given.items() if value is not None}


def refuse_unused_options(
    kind: str, given: Mapping[str, Any], source: str, labels: Mapping[str, str] | None = None
) -> None:
    """A ``UsageError`` for the first option in ``given`` that a ``kind`` source does not use.

    ``labels`` say how the user gave each option (``--weights``, ``weights in the model card``).
    """
    labels = labels or {}
    described = f"{KIND_NAMES.get(kind, kind)} (source kind {kind!r}, {source})"
    for key, why in UNUSED_OPTIONS.get(kind, {}).items():
        if key in given:
            label = labels.get(key, key)
            raise UsageError(f"{label} does not apply to {described}: {why}; remove it")
    fixed = FIXED_EXPORTER.get(kind)
    if fixed is not None and given.get("exporter") not in (None, fixed[0]):
        label = labels.get("exporter", "exporter")
        raise UsageError(
            f"{label} {given['exporter']} does not apply to {described}: it is always exported with the "
            f"{fixed[0]} exporter ({fixed[1]}); remove it"
        )


def _float_tuple(value: Any, key: str, card: Path) -> tuple[float, ...]:
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ModelError(f"{key} must be a number or a list of numbers, got {value!r}", path=card)
    return tuple(float(v) for v in values)


def _int_tuple(value: Any, key: str, card: Path) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ModelError(f"{key} must be a list of integers such as [1, 8, 8], got {value!r}", path=card)
    return tuple(value)


def _str_tuple(value: Any, key: str, card: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ModelError(f"{key} must be a list of strings, got {value!r}", path=card)
    return tuple(value)


def _resolve(value: Any, key: str, card: Path) -> str:
    """Paths in a card are relative to the card's folder; a ``package.module:factory`` stays as written."""
    if not isinstance(value, str) or not value:
        raise ModelError(f"{key} must be a non-empty string, got {value!r}", path=card)
    if key == "source" and FACTORY_PATTERN.match(value):
        return value
    candidate = Path(value)
    return value if candidate.is_absolute() else str(card.parent / candidate)


def load_model_card(path: Path) -> dict[str, Any]:
    """Read ``gate-model.yaml`` into ``ModelSpec`` keyword overrides (only the keys the card sets)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ModelError(f"cannot read the model card: {error.strerror}", path=path) from error
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as error:
        raise ModelError(f"the model card is not valid YAML: {error}", path=path) from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ModelError(
            f"expected a mapping of {', '.join(CARD_KEYS)}, found {type(data).__name__}", path=path
        )
    unknown = sorted(set(data) - set(CARD_KEYS))
    if unknown:
        raise ModelError(
            f"unknown key(s) {', '.join(map(str, unknown))}; a model card may set {', '.join(CARD_KEYS)}",
            path=path,
        )
    card: dict[str, Any] = {}
    if "source" in data:
        card["source"] = _resolve(data["source"], "source", path)
    if "weights" in data:
        card["weights"] = Path(_resolve(data["weights"], "weights", path))
    if "input_shape" in data:
        card["input_shape"] = _int_tuple(data["input_shape"], "input_shape", path)
    for key in ("mean", "std"):
        if key in data:
            card[key] = _float_tuple(data[key], key, path)
    if "scale" in data:
        value = data["scale"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ModelError(f"scale must be one number (such as 255), got {value!r}", path=path)
        card["scale"] = float(value)
    for key, allowed in (("channels", CHANNEL_ORDERS), ("layout", LAYOUTS)):
        if key in data:
            if data[key] not in allowed:
                raise ModelError(f"{key} must be one of {', '.join(allowed)}, got {data[key]!r}", path=path)
            card[key] = data[key]
    if "class_names" in data:
        card["class_names"] = _str_tuple(data["class_names"], "class_names", path)
    if "output" in data:
        if not isinstance(data["output"], str) or not data["output"]:
            raise ModelError(
                f"output must be the name of one of the model's outputs, got {data['output']!r}", path=path
            )
        card["output"] = data["output"]
    return card


def merge_spec(card: dict[str, Any] | None = None, **cli_overrides: Any) -> ModelSpec:
    """Build a ``ModelSpec`` from card values, with every CLI flag that is not ``None`` taking precedence."""
    fields = {f.name for f in dataclasses.fields(ModelSpec)}
    unknown = sorted(set(cli_overrides) - fields)
    if unknown:
        raise ModelError(f"unknown model option(s): {', '.join(unknown)}")
    merged = dict(card or {})
    merged.update({key: value for key, value in cli_overrides.items() if value is not None})
    if "source" not in merged:
        raise ModelError(
            "no model source given: pass a model path or factory, or set 'source' in gate-model.yaml"
        )
    if merged.get("weights") is not None:
        merged["weights"] = Path(merged["weights"])
    for key in ("mean", "std", "input_shape", "class_names"):
        if merged.get(key) is not None:
            merged[key] = tuple(merged[key])
    spec = ModelSpec(**merged)
    source = spec.source
    if FACTORY_PATTERN.match(source) or Path(source).exists():  # a missing file is load_model's to report
        given = {key: value for key, value in merged.items() if value is not None and value is not False}
        from_cli = {key for key, value in cli_overrides.items() if value is not None}
        labels = {
            key: CLI_FLAGS.get(key, f"--{key.replace('_', '-')}")
            if key in from_cli
            else f"{key} (set in the model card)"
            for key in given
        }
        refuse_unused_options(source_kind(spec), given, source, labels)
    return spec
