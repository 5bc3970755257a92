"""``load_model`` and ``ModelUnderTest`` on every source kind: parity, preprocessing, batching, gradients."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from torch import nn

from gate.errors import CheckError, ModelError
from gate.model import ModelSpec, ModelUnderTest, export_to_onnx, load_model
from gate.model.session import CPU

PARITY_ATOL = 1e-4


@pytest.fixture(scope="module")
def cnn_onnx(tmp_path_factory, digits_cnn, x_test) -> Path:
    """The digits CNN exported once (dynamo) for the ONNX-only tests of this module."""
    return export_to_onnx(digits_cnn, x_test, tmp_path_factory.mktemp("onnx") / "cnn.onnx").path


def input_gradient(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    xg = x.clone().requires_grad_(True)
    nn.functional.cross_entropy(module(xg), y).backward()
    return xg.grad


def assert_parity(model: ModelUnderTest, reference: nn.Module, x: torch.Tensor) -> None:
    """Session, source module and the original module give the same logits (and so the same classes)."""
    with torch.no_grad():
        expected = reference(x)
    session_logits = model.scores(x)
    torch.testing.assert_close(session_logits, expected, atol=PARITY_ATOL, rtol=1e-4)
    torch.testing.assert_close(model.source_scores(x), expected, atol=PARITY_ATOL, rtol=1e-4)
    assert torch.equal(session_logits.argmax(1), expected.argmax(1))


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_factory_with_weights_exports_with_parity(
    tmp_path, factories, cnn_weights, digits_cnn, x_test, exporter
):
    spec = ModelSpec(f"{factories}:make_cnn", weights=cnn_weights, input_shape=(1, 8, 8), exporter=exporter)
    model = load_model(spec, work_dir=tmp_path)
    assert model.source_kind == "factory"
    assert model.export_info is not None and model.export_info.exporter == exporter
    assert model.onnx_path == tmp_path / "model.onnx"
    assert not (tmp_path / "model.onnx.data").exists()
    assert model.onnx_sha256 == hashlib.sha256(model.onnx_path.read_bytes()).hexdigest()
    assert (model.provider, model.device, model.num_classes, model.input_shape) == (
        CPU,
        torch.device("cpu"),
        10,
        (1, 8, 8),
    )
    assert_parity(model, digits_cnn, x_test)
    assert model.gradient_model is not None and model.gradient_unavailable_reason is None


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_resnet_style_model_with_batchnorm_keeps_parity(tmp_path, factories, x_test, exporter):
    import model_factories

    spec = ModelSpec(f"{factories}:make_resnet", exporter=exporter)
    model = load_model(spec, work_dir=tmp_path, example_input=x_test[:4])
    assert model.input_shape == (1, 8, 8)
    assert_parity(model, model_factories.make_resnet(), x_test)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_onnx_only_model_gets_a_verified_twin_with_source_gradients(
    tmp_path, factories, x_test, y_test, exporter
):
    import model_factories

    source = model_factories.make_resnet()
    path = export_to_onnx(source, x_test[:2], tmp_path / "resnet.onnx", exporter=exporter).path
    model = load_model(ModelSpec(str(path)), work_dir=tmp_path)
    assert model.source_kind == "onnx" and model.export_info is None
    model.verify_twin(x_test)
    assert model.gradient_model is not None and model.gradient_unavailable_reason is None
    twin = model.require_gradient_model()
    x, y = x_test[:64], y_test[:64]
    torch.testing.assert_close(input_gradient(twin, x, y), input_gradient(source, x, y), atol=1e-6, rtol=1e-4)


def test_onnx_only_with_an_unsupported_op_runs_without_gradients(tmp_path, x_test):
    from onnx import TensorProto, helper, numpy_helper, save

    weight = numpy_helper.from_array(torch.randn(10, 64).numpy(), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["f"]),
            helper.make_node("Gemm", ["f", "w"], ["g"], transB=1),
            helper.make_node("Hardmax", ["g"], ["y"]),
        ],
        "hardmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [weight],
    )
    save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8),
        tmp_path / "hardmax.onnx",
    )
    model = load_model(ModelSpec(str(tmp_path / "hardmax.onnx"), input_shape=(1, 8, 8)), work_dir=tmp_path)
    assert model.scores(x_test).shape == (len(x_test), 10)
    assert model.gradient_model is None
    assert "Hardmax" in model.gradient_unavailable_reason
    with pytest.raises(CheckError, match=r"gradient-based checks need a differentiable model: .*Hardmax"):
        model.require_gradient_model()


def test_a_twin_that_disagrees_is_withdrawn(tmp_path, cnn_onnx, digits_cnn, x_test):
    path = cnn_onnx
    model = load_model(ModelSpec(str(path)), work_dir=tmp_path)
    weight = next(b for b in model.require_gradient_model().buffers() if b.is_floating_point())
    weight.add_(1.0)
    model.verify_twin(x_test)
    assert model.gradient_model is None
    assert "disagrees with the ONNX Runtime session" in model.gradient_unavailable_reason


def test_preprocessing_is_applied_inside_gate(tmp_path, factories, cnn_weights, digits_cnn, x_test):
    spec = ModelSpec(
        f"{factories}:make_cnn", weights=cnn_weights, input_shape=(1, 8, 8), mean=(0.5,), std=(0.25,)
    )
    model = load_model(spec, work_dir=tmp_path)
    reference = nn.Sequential(_Affine(0.5, 0.25), digits_cnn)
    assert_parity(model, reference, x_test)
    gradient = input_gradient(model.require_gradient_model(), x_test[:8], torch.zeros(8, dtype=torch.long))
    assert torch.allclose(gradient, input_gradient(reference, x_test[:8], torch.zeros(8, dtype=torch.long)))


class _Affine(nn.Module):
    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def test_onnx_only_with_preprocessing_normalises_before_the_session(tmp_path, cnn_onnx, digits_cnn, x_test):
    path = cnn_onnx
    model = load_model(ModelSpec(str(path), mean=(0.5,), std=(0.25,)), work_dir=tmp_path)
    with torch.no_grad():
        expected = digits_cnn((x_test - 0.5) / 0.25)
    torch.testing.assert_close(model.scores(x_test), expected, atol=PARITY_ATOL, rtol=1e-4)


@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.(script|save)` is deprecated:DeprecationWarning")
def test_torchscript_archive_is_detected_by_content(tmp_path, factories, digits_cnn, x_test):
    import model_factories

    module = model_factories.make_cnn()
    module.load_state_dict(digits_cnn.state_dict())
    path = tmp_path / "scripted.pt"  # a .pt name, but TorchScript inside
    torch.jit.save(torch.jit.script(module.eval()), str(path))
    model = load_model(ModelSpec(str(path), input_shape=(1, 8, 8)), work_dir=tmp_path)
    assert model.source_kind == "torchscript"
    assert model.export_info.exporter == "torchscript"
    assert_parity(model, digits_cnn, x_test)


def test_torch_export_program_with_a_fixed_batch_is_fed_padded_batches(tmp_path, digits_cnn, x_test):
    program = torch.export.export(digits_cnn, (x_test[:4],))  # no dynamic_shapes: the batch is fixed at 4
    torch.export.save(program, str(tmp_path / "cnn.pt2"))
    model = load_model(ModelSpec(str(tmp_path / "cnn.pt2")), work_dir=tmp_path)
    # The input shape comes from the example inputs stored in the archive.
    assert (model.source_kind, model.input_shape, model._fixed_batch) == ("torch.export", (1, 8, 8), 4)
    assert_parity(model, digits_cnn, x_test[:11])


def test_scores_batches_and_returns_detached_logits_on_the_input_device(
    tmp_path, cnn_onnx, digits_cnn, x_test
):
    path = cnn_onnx
    model = load_model(ModelSpec(str(path)), work_dir=tmp_path)
    whole = model.scores(x_test)
    model.batch_size = 7
    x = x_test.clone().requires_grad_(True)
    chunked = model.scores(x)
    assert not chunked.requires_grad and chunked.device == x.device and chunked.dtype == torch.float32
    torch.testing.assert_close(chunked, whole)
    assert model.scores(x_test[:0]).shape == (0, 10)


def test_class_names_are_kept_and_checked(tmp_path, cnn_onnx, digits_cnn, x_test):
    path = cnn_onnx
    names = tuple(str(i) for i in range(10))
    assert load_model(ModelSpec(str(path), class_names=names), work_dir=tmp_path).class_names == names
    with pytest.raises(ModelError, match="class_names lists 3 names but the model outputs 10 logits"):
        load_model(ModelSpec(str(path), class_names=("a", "b", "c")), work_dir=tmp_path)


# ----------------------------------------------------------------------------- bad input
def test_input_shape_mismatch_in_scores(tmp_path, cnn_onnx, digits_cnn, x_test):
    path = cnn_onnx
    model = load_model(ModelSpec(str(path)), work_dir=tmp_path)
    with pytest.raises(ModelError, match=r"model expects \[N, 1, 8, 8\], got \[5, 3, 8, 8\]"):
        model.scores(torch.zeros(5, 3, 8, 8))


def test_input_shape_mismatch_with_the_onnx_declaration(tmp_path, cnn_onnx, digits_cnn, x_test):
    path = cnn_onnx
    with pytest.raises(
        ModelError, match=r"input is \[N, 1, 8, 8\], but the given input shape is \[N, 3, 8, 8\]"
    ):
        load_model(ModelSpec(str(path), input_shape=(3, 8, 8)), work_dir=tmp_path)


def test_input_shape_mismatch_between_spec_and_data(tmp_path, factories, x_test):
    spec = ModelSpec(f"{factories}:make_cnn", input_shape=(1, 4, 16))
    with pytest.raises(
        ModelError, match=r"input_shape is \[1, 4, 16\] but the evaluation data has .*\[1, 8, 8\]"
    ):
        load_model(spec, work_dir=tmp_path, example_input=x_test)


def test_factory_without_any_input_shape(tmp_path, factories):
    with pytest.raises(ModelError, match=r"cannot tell the input shape .* expected input_shape"):
        load_model(ModelSpec(f"{factories}:make_cnn"), work_dir=tmp_path)


def test_output_that_is_not_logits(tmp_path, factories):
    spec = ModelSpec(f"{factories}:make_image_output", input_shape=(1, 8, 8), exporter="torchscript")
    with pytest.raises(
        ModelError, match=r"expected the model to output logits of shape \[N, classes\].*\[2, 2, 8, 8\]"
    ):
        load_model(spec, work_dir=tmp_path)


def test_nan_logits(tmp_path, factories, x_test):
    model = load_model(
        ModelSpec(f"{factories}:make_nan_logits", input_shape=(1, 8, 8), exporter="torchscript"),
        work_dir=tmp_path,
    )
    with pytest.raises(
        ModelError, match=r"non-finite logits \(NaN or inf\) for 297 of 297 input\(s\), the first at index 0"
    ):
        model.scores(x_test)
    with pytest.raises(ModelError, match="factory PyTorch module returned non-finite logits"):
        model.source_scores(x_test)


def test_scores_do_not_move_the_gradient_models_preprocessing(tmp_path, cnn_onnx, x_test):
    """The session's normalisation and the gradient model share one Normalize; scoring must not relocate it."""
    model = load_model(ModelSpec(str(cnn_onnx), mean=(0.5,), std=(0.25,)), work_dir=tmp_path)
    before = [b.device for b in model.require_gradient_model().buffers()]
    model.scores(x_test[:4])
    assert [b.device for b in model.require_gradient_model().buffers()] == before


def test_loading_leaves_the_global_random_state_alone(tmp_path, cnn_onnx):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_model(ModelSpec(str(cnn_onnx)), work_dir=tmp_path)
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize(
    ("cast_to", "found"),
    [
        ("INT64", "tensor(int64)"),
        ("INT32", "tensor(int32)"),
        ("BOOL", "tensor(bool)"),
        ("UINT8", "tensor(uint8)"),
    ],
)
def test_an_onnx_model_with_integer_or_boolean_outputs_is_refused_at_load_time(tmp_path, cast_to, found):
    """A decision (label, one-hot, threshold) has no gradient or margin: refused with exit 2, not mid-run."""
    import onnx
    from onnx import TensorProto, helper

    from .test_onnx_file import linear_model

    model = linear_model()
    model.graph.node[-1].output[0] = "scores"
    model.graph.node.append(helper.make_node("Cast", ["scores"], ["y"], to=getattr(TensorProto, cast_to)))
    model.graph.output[0].type.tensor_type.elem_type = getattr(TensorProto, cast_to)
    onnx.save_model(model, str(tmp_path / "decision.onnx"))
    with pytest.raises(ModelError) as caught:
        load_model(ModelSpec(str(tmp_path / "decision.onnx")), work_dir=tmp_path)
    assert f"expected a float32 output (scores of shape [N, classes]), found {found}" in str(caught.value)
    assert "integer or boolean output is a decision" in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_double_output_is_read_as_float32_scores(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from .test_onnx_file import linear_model

    model = linear_model()
    model.graph.node[-1].output[0] = "scores"
    model.graph.node.append(helper.make_node("Cast", ["scores"], ["y"], to=TensorProto.DOUBLE))
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.DOUBLE
    onnx.save_model(model, str(tmp_path / "double.onnx"))
    onnx.save_model(linear_model(), str(tmp_path / "float.onnx"))
    double = load_model(ModelSpec(str(tmp_path / "double.onnx")), work_dir=tmp_path)
    single = load_model(ModelSpec(str(tmp_path / "float.onnx")), work_dir=tmp_path)
    x = torch.rand(4, *single.input_shape)
    assert double.scores(x).dtype == torch.float32
    torch.testing.assert_close(double.scores(x), single.scores(x))


def test_a_torch_model_whose_export_outputs_booleans_is_refused_at_load_time(tmp_path, factories):
    spec = ModelSpec(f"{factories}:make_decision", input_shape=(1, 8, 8))
    with pytest.raises(ModelError, match=r"found tensor\(bool\).*a decision"):
        load_model(spec, work_dir=tmp_path)
