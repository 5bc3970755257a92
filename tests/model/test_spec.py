"""``ModelSpec`` validation, the ``gate-model.yaml`` card and CLI overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate.errors import ModelError, UsageError
from gate.model import ModelSpec, load_model_card, merge_spec


def write_card(folder: Path, text: str) -> Path:
    path = folder / "gate-model.yaml"
    path.write_text(text)
    return path


def test_card_values_with_paths_relative_to_the_card(tmp_path):
    card = load_model_card(
        write_card(
            tmp_path,
            "source: models/net.onnx\nweights: w.safetensors\ninput_shape: [3, 32, 32]\n"
            "mean: [0.5, 0.5, 0.5]\nstd: 0.25\nclass_names: [cat, dog]\n",
        )
    )
    assert card == {
        "source": str(tmp_path / "models" / "net.onnx"),
        "weights": tmp_path / "w.safetensors",
        "input_shape": (3, 32, 32),
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25,),
        "class_names": ("cat", "dog"),
    }


def test_a_factory_source_is_kept_as_written(tmp_path):
    assert load_model_card(write_card(tmp_path, "source: my_pkg.models:build\n")) == {
        "source": "my_pkg.models:build"
    }


def test_cli_flags_override_the_card(tmp_path):
    card = load_model_card(write_card(tmp_path, "source: net.onnx\ninput_shape: [1, 8, 8]\nmean: [0.1]\n"))
    spec = merge_spec(card, input_shape=[1, 16, 16], mean=None, device="cpu")
    assert spec == ModelSpec(
        source=str(tmp_path / "net.onnx"), input_shape=(1, 16, 16), mean=(0.1,), device="cpu"
    )


def test_merge_without_a_source(tmp_path):
    with pytest.raises(ModelError, match="no model source given"):
        merge_spec({}, input_shape=(1, 8, 8))


def test_merge_rejects_unknown_options():
    with pytest.raises(ModelError, match="unknown model option"):
        merge_spec({"source": "m.onnx"}, colour="blue")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("source: [a\n", "not valid YAML"),
        ("- a list\n", "expected a mapping"),
        ("source: m.onnx\nexporter: dynamo\n", "unknown key"),
        ("source: m.onnx\ninput_shape: 1x8x8\n", "input_shape must be a list of integers"),
        ("source: m.onnx\nmean: [a, b]\n", "mean must be a number or a list of numbers"),
        ("source: m.onnx\nclass_names: cat\n", "class_names must be a list of strings"),
        ("source: 3\n", "source must be a non-empty string"),
        ("source: !!python/object:os.system ls\n", "not valid YAML"),
    ],
)
def test_bad_cards(tmp_path, text, message):
    with pytest.raises(ModelError, match=message):
        load_model_card(write_card(tmp_path, text))


def test_missing_card(tmp_path):
    with pytest.raises(ModelError, match="cannot read the model card"):
        load_model_card(tmp_path / "gate-model.yaml")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exporter": "tflite"}, "exporter must be"),
        ({"device": "tpu"}, "device must be"),
        ({"input_shape": (1, 0, 8)}, "input_shape must be positive integers"),
        ({"std": (0.0,)}, "std must be positive"),
        ({"mean": (0.1, 0.2), "std": (0.3, 0.4, 0.5)}, "one value per channel"),
    ],
)
def test_invalid_specs(kwargs, message):
    with pytest.raises(ModelError, match=message):
        ModelSpec("m.onnx", **kwargs)


# --------------------------------------------------------------------- options a source kind does not use
@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One small model file per source kind (and a factory reference), keyed by kind."""
    import warnings

    import onnx
    import torch
    from torch import nn

    from .test_onnx_file import linear_model

    folder = tmp_path_factory.mktemp("sources")
    module = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    onnx.save_model(linear_model(), str(folder / "model.onnx"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated upstream
        torch.jit.save(torch.jit.script(module), str(folder / "scripted.pt"))
    torch.export.save(torch.export.export(module, (torch.rand(2, 1, 8, 8),)), str(folder / "program.pt2"))
    torch.save(module, folder / "whole.pt")
    return {
        "onnx": str(folder / "model.onnx"),
        "torchscript": str(folder / "scripted.pt"),
        "torch.export": str(folder / "program.pt2"),
        "pickle": str(folder / "whole.pt"),
        "factory": "gate.demo.models:digits_cnn",
    }


REFUSED = [
    ("onnx", {"weights": "w.safetensors"}, "--weights", "carries its own weights"),
    ("onnx", {"trust_pickle": True}, "--trust-pickle", "never unpickled"),
    ("onnx", {"exporter": "dynamo"}, "--exporter", "not exported"),
    ("onnx", {"opset": 17}, "--opset", "not exported"),
    ("torchscript", {"weights": "w.safetensors"}, "--weights", "carries its own weights"),
    ("torchscript", {"trust_pickle": True}, "--trust-pickle", "nothing to trust"),
    ("torchscript", {"exporter": "dynamo"}, "--exporter dynamo", "always exported with the torchscript"),
    ("torch.export", {"weights": "w.safetensors"}, "--weights", "carries its own weights"),
    (
        "torch.export",
        {"exporter": "torchscript"},
        "--exporter torchscript",
        "always exported with the dynamo",
    ),
    ("factory", {"trust_pickle": True}, "--trust-pickle", "never unpickled"),
]


@pytest.mark.parametrize(("kind", "flags", "flag", "why"), REFUSED)
def test_an_option_the_source_kind_does_not_use_is_a_usage_error(sources, kind, flags, flag, why):
    from gate.model.spec import KIND_NAMES

    with pytest.raises(UsageError) as caught:
        merge_spec(None, source=sources[kind], **flags)
    message = str(caught.value)
    assert message.startswith(f"{flag} does not apply to {KIND_NAMES[kind]} (source kind {kind!r}")
    assert why in message and caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("kind", "flags"),
    [
        (
            "onnx",
            {"input_shape": (1, 8, 8), "mean": (0.5,), "std": (0.25,), "class_names": tuple("0123456789")},
        ),
        ("torchscript", {"exporter": "torchscript", "opset": 17, "input_shape": (1, 8, 8)}),
        ("torch.export", {"exporter": "dynamo", "opset": 18, "trust_pickle": True}),
        ("factory", {"weights": "w.safetensors", "exporter": "torchscript", "opset": 17}),
        ("pickle", {"weights": "w.safetensors", "trust_pickle": True, "exporter": "torchscript"}),
    ],
)
def test_the_options_a_source_kind_uses_are_accepted(sources, kind, flags):
    spec = merge_spec(None, source=sources[kind], **flags)
    assert spec.source == sources[kind]


def test_weights_from_the_model_card_are_named_as_such(tmp_path, sources):
    card = load_model_card(write_card(tmp_path, "weights: w.safetensors\n"))
    with pytest.raises(
        UsageError, match=r"^weights \(set in the model card\) does not apply to an ONNX model"
    ):
        merge_spec(card, source=sources["onnx"])


def test_load_model_refuses_them_too(tmp_path, sources):
    """A ``ModelSpec`` built in code, without merge_spec, meets the same rule at load time."""
    from gate.model import load_model

    with pytest.raises(UsageError, match=r"^weights does not apply to an ONNX model"):
        load_model(ModelSpec(sources["onnx"], weights=tmp_path / "w.safetensors"), work_dir=tmp_path)


def test_gate_check_with_weights_beside_an_onnx_model_is_exit_2(tmp_path, sources):
    from click.testing import CliRunner

    from gate.cli import main

    data = tmp_path / "d.npz"
    data.write_bytes(b"")  # present: the weights flag is the mistake named
    args = ["check", "-p", "builtin:baseline", "-m", sources["onnx"], "-w", "w.safetensors", "-d", str(data)]
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "--weights does not apply to an ONNX model" in result.output
