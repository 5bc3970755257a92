"""The export cache: a second load of the same model reuses the export; anything that changes it does not."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from gate.model import ModelSpec, export_to_onnx, load_model
from gate.model.export_cache import CACHE_ENV, RECORD_NAME, export_key, module_digest


@pytest.fixture()
def exports(monkeypatch):
    """Count the exports that really run."""
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[2])
        return export_to_onnx(*args, **kwargs)

    monkeypatch.setattr("gate.model.under_test.export_to_onnx", counting)
    monkeypatch.delenv(CACHE_ENV, raising=False)
    return calls


def cnn_spec(factories, weights, **options) -> ModelSpec:
    return ModelSpec(f"{factories}:make_cnn", weights=weights, input_shape=(1, 8, 8), **options)


def test_a_second_load_into_the_same_folder_reuses_the_export(
    tmp_path, factories, cnn_weights, x_test, exports
):
    first = load_model(cnn_spec(factories, cnn_weights), work_dir=tmp_path, example_input=x_test)
    second = load_model(cnn_spec(factories, cnn_weights), work_dir=tmp_path, example_input=x_test)
    assert len(exports) == 1
    assert first.export_info.cached is None and second.export_info.cached == "the report folder"
    assert second.onnx_sha256 == first.onnx_sha256 and second.export_info.exporter == "dynamo"
    torch.testing.assert_close(second.scores(x_test), first.scores(x_test))


def test_other_weights_an_other_exporter_or_an_other_shape_export_again(
    tmp_path, factories, cnn_weights, digits_cnn, x_test, exports
):
    load_model(cnn_spec(factories, cnn_weights), work_dir=tmp_path)
    state = {k: v.clone() for k, v in digits_cnn.state_dict().items()}
    first_weight = next(k for k in state if k.endswith("weight"))
    state[first_weight][0].mul_(1.5)
    changed = tmp_path / "changed.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(changed))
    reloaded = load_model(cnn_spec(factories, changed), work_dir=tmp_path)
    assert len(exports) == 2 and reloaded.export_info.cached is None
    load_model(cnn_spec(factories, changed, exporter="torchscript"), work_dir=tmp_path)
    assert len(exports) == 3
    load_model(cnn_spec(factories, changed, exporter="torchscript"), work_dir=tmp_path)
    assert len(exports) == 3


def test_the_key_covers_values_not_only_shapes(digits_cnn):
    clone = type(digits_cnn)()
    clone.load_state_dict(digits_cnn.state_dict())
    assert module_digest(clone) == module_digest(digits_cnn)
    with torch.no_grad():
        next(clone.parameters()).view(-1)[0] += 1e-6
    assert module_digest(clone) != module_digest(digits_cnn)
    options = {
        "source_sha256": None,
        "output": None,
        "input_shape": (1, 8, 8),
        "exporter": "auto",
        "opset": None,
    }
    assert export_key(digits_cnn, **options) != export_key(digits_cnn, **{**options, "opset": 18})
    assert export_key(digits_cnn, **options) != export_key(
        digits_cnn, **{**options, "input_shape": (1, 9, 9)}
    )


def test_a_tampered_cached_file_is_exported_again(tmp_path, factories, cnn_weights, exports):
    load_model(cnn_spec(factories, cnn_weights), work_dir=tmp_path)
    model_file = tmp_path / "model.onnx"
    model_file.write_bytes(model_file.read_bytes() + b"\0")
    again = load_model(cnn_spec(factories, cnn_weights), work_dir=tmp_path)
    assert len(exports) == 2 and again.export_info.cached is None


def test_a_cached_file_that_computes_something_else_is_not_used(
    tmp_path, factories, cnn_weights, x_test, exports
):
    """A record whose digest is right but whose model is another one (a forged or stale cache)."""
    model = load_model(cnn_spec(factories, cnn_weights), work_dir=tmp_path)
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    forged = export_to_onnx(other, x_test[:2], tmp_path / "model.onnx")
    record = json.loads((tmp_path / RECORD_NAME).read_text())
    record["sha256"] = forged.sha256
    (tmp_path / RECORD_NAME).write_text(json.dumps(record))
    again = load_model(cnn_spec(factories, cnn_weights), work_dir=tmp_path)
    assert len(exports) == 2  # the first load, and the export after the forged file was refused
    assert again.export_info.cached is None
    torch.testing.assert_close(again.scores(x_test), model.scores(x_test))


def test_the_user_cache_is_shared_by_report_folders(
    tmp_path, factories, cnn_weights, x_test, exports, monkeypatch
):
    shared = tmp_path / "shared"
    load_model(cnn_spec(factories, cnn_weights), work_dir=tmp_path / "a", export_cache=shared)
    monkeypatch.setenv(CACHE_ENV, str(shared))  # the environment variable is the same switch
    second = load_model(cnn_spec(factories, cnn_weights), work_dir=tmp_path / "b")
    assert len(exports) == 1
    assert second.export_info.cached == f"the export cache {shared}"
    assert second.onnx_path == tmp_path / "b" / "model.onnx" and second.onnx_path.is_file()
    torch.testing.assert_close(
        second.scores(x_test[:8]), second.source_scores(x_test[:8]), atol=1e-4, rtol=1e-4
    )
