"""``ModelSpec`` validation, the ``gate-model.yaml`` card and CLI overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate.errors import ModelError
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
