"""Reading ONNX files: corrupt files, size limits, external data confined to the model's folder and hashed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gate.errors import ModelError
from gate.model import ModelSpec, load_model
from gate.model.onnx_file import read_onnx


def linear_model() -> onnx.ModelProto:
    """x [N, 1, 8, 8] -> Flatten -> Gemm -> y [N, 10], with a 2.5 KiB weight."""
    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((10, 64)).astype(np.float32), "w"
    )
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w"], ["y"], transB=1)],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def save_with_external_data(folder: Path, location: str = "weights.bin") -> Path:
    path = folder / "model.onnx"
    onnx.save_model(
        linear_model(), str(path), save_as_external_data=True, location=location, size_threshold=0
    )
    return path


def relocate(path: Path, location: str) -> None:
    """Point every external tensor of the model at ``location`` without touching the data."""
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(path))


def test_external_data_inside_the_folder_loads_and_is_hashed_with_the_model(tmp_path):
    path = save_with_external_data(tmp_path)
    _, info = read_onnx(path)
    assert info.external_files == ((tmp_path / "weights.bin").resolve(),)
    model_only = hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.sha256 != model_only
    (tmp_path / "weights.bin").write_bytes(b"\0" * (tmp_path / "weights.bin").stat().st_size)
    assert read_onnx(path)[1].sha256 != info.sha256
    model = load_model(ModelSpec(str(path)), work_dir=tmp_path)
    assert model.num_classes == 10 and model.gradient_model is not None


@pytest.mark.parametrize("escape", ["../outside.bin", "sub/../../outside.bin", "ABSOLUTE"])
def test_external_data_outside_the_folder_is_refused_before_reading(tmp_path, escape):
    folder = tmp_path / "model"
    folder.mkdir()
    path = save_with_external_data(folder)
    outside = tmp_path / "outside.bin"
    (folder / "weights.bin").rename(outside)
    relocate(path, str(outside) if escape == "ABSOLUTE" else escape)
    with pytest.raises(
        ModelError, match=r"expected a file inside the model's folder .*, found a location outside it"
    ):
        load_model(ModelSpec(str(path)), work_dir=tmp_path)


def test_a_symlink_leading_out_of_the_folder_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    path = save_with_external_data(folder)
    (folder / "weights.bin").rename(tmp_path / "real.bin")
    (folder / "weights.bin").symlink_to(tmp_path / "real.bin")
    with pytest.raises(ModelError, match="outside it"):
        read_onnx(path)


def test_missing_external_data(tmp_path):
    path = save_with_external_data(tmp_path)
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelError, match="external data of tensor 'w' not found"):
        read_onnx(path)


def test_corrupt_onnx(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07garbage that is not a protobuf \xff\xfe")
    with pytest.raises(ModelError, match="expected an ONNX"):
        load_model(ModelSpec(str(path)), work_dir=tmp_path)


def test_invalid_onnx_graph_fails_the_checker(tmp_path):
    model = linear_model()
    model.graph.node[1].input[1] = "undefined_weight"
    path = tmp_path / "model.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(ModelError, match=r"fails onnx\.checker"):
        load_model(ModelSpec(str(path)), work_dir=tmp_path)


def test_size_limit(tmp_path, monkeypatch):
    path = tmp_path / "model.onnx"
    onnx.save_model(linear_model(), str(path))
    monkeypatch.setattr("gate.model.files.MAX_FILE_BYTES", 1024)
    with pytest.raises(
        ModelError, match=r"model file is 2\.\d KiB, larger than the limit of 1\.0 KiB"
    ) as caught:
        load_model(ModelSpec(str(path)), work_dir=tmp_path)
    assert "MAX_FILE_BYTES" in str(caught.value)


def test_two_float_outputs_are_ambiguous_unless_output_names_one(tmp_path):
    model = linear_model()
    model.graph.output.append(helper.make_tensor_value_info("f", TensorProto.FLOAT, ["N", 64]))
    path = tmp_path / "model.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(ModelError, match=r"2 float outputs \['y', 'f'\]; gate cannot tell") as caught:
        load_model(ModelSpec(str(path)), work_dir=tmp_path)
    assert "output: in gate-model.yaml" in str(caught.value)
