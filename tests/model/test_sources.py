"""Loading PyTorch sources: factories, weights, and the refusal to unpickle anything untrusted."""

from __future__ import annotations

import pickle
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from gate.errors import ModelError, UsageError
from gate.model import ModelSpec, load_model
from gate.model.sources import apply_weights, load_factory, source_kind

pytestmark = pytest.mark.filterwarnings(
    r"ignore:`torch\.jit\.(script|save)` is deprecated:DeprecationWarning"
)


class WritesAFile:
    """Unpickling this creates ``path``: the proof that a loader executed code from the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "pwned"))


def test_factory_kind_is_recognised(factories):
    assert source_kind(ModelSpec(f"{factories}:make_cnn")) == "factory"
    assert isinstance(load_factory(f"{factories}:make_cnn"), nn.Module)


def test_current_directory_is_importable(tmp_path, monkeypatch):
    (tmp_path / "local_models.py").write_text(
        "import torch\ndef build():\n    return torch.nn.Linear(64, 10)\n"
    )
    monkeypatch.chdir(tmp_path)
    assert isinstance(load_factory("local_models:build"), nn.Linear)


def test_a_factory_may_import_a_module_of_the_current_directory_inside_its_body(tmp_path, monkeypatch):
    """Issue 22: the directory stays importable while the factory runs, not only while it is imported."""
    (tmp_path / "lazy_layers.py").write_text("import torch\nLAYER = torch.nn.Linear(64, 10)\n")
    (tmp_path / "lazy_models.py").write_text(
        "def build():\n    import lazy_layers\n    return lazy_layers.LAYER\n"
    )
    monkeypatch.chdir(tmp_path)
    assert isinstance(load_factory("lazy_models:build"), nn.Linear)
    assert str(tmp_path) not in sys.path  # and is taken off again


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no_such_package.models:build", r"cannot import module 'no_such_package.models'"),
        ("{m}:no_such_factory", r"has no attribute 'no_such_factory'"),
        ("{m}:NOT_CALLABLE", r"expected '.*:NOT_CALLABLE' to be callable, found a int"),
        ("{m}:make_not_a_module", r"expected factory .* to return a torch.nn.Module, found str"),
        ("{m}:make_failing", r"raised RuntimeError: checkpoint server unreachable"),
    ],
)
def test_bad_factories(tmp_path, factories, reference, message):
    with pytest.raises(ModelError, match=message):
        load_model(ModelSpec(reference.format(m=factories), input_shape=(1, 8, 8)), work_dir=tmp_path)


def test_state_dict_weights_load_with_weights_only(tmp_path, factories, digits_cnn):
    path = tmp_path / "cnn.pth"
    torch.save(digits_cnn.state_dict(), path)
    module = load_factory(f"{factories}:make_cnn")
    apply_weights(module, path)
    x = torch.rand(4, 1, 8, 8)
    torch.testing.assert_close(module(x), digits_cnn(x))


def test_weights_that_do_not_match_list_the_keys(tmp_path, factories, digits_cnn):
    state = dict(digits_cnn.state_dict())
    state.pop("head.3.bias")
    state["extra.weight"] = torch.zeros(3)
    state["head.1.weight"] = torch.zeros(5, 5)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ModelError) as caught:
        apply_weights(load_factory(f"{factories}:make_cnn"), tmp_path / "bad.safetensors")
    message = str(caught.value)
    assert "missing keys: head.3.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "head.1.weight (module [64, 512], file [5, 5])" in message


def test_corrupt_safetensors(tmp_path, factories):
    (tmp_path / "w.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelError, match="expected a safetensors file"):
        apply_weights(load_factory(f"{factories}:make_cnn"), tmp_path / "w.safetensors")


def test_a_malicious_weights_file_is_not_unpickled(tmp_path, factories):
    marker = tmp_path / "pwned.txt"
    torch.save({"weight": WritesAFile(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="not a plain state dict"):
        apply_weights(load_factory(f"{factories}:make_cnn"), tmp_path / "evil.pt")
    assert not marker.exists()


@pytest.mark.parametrize("legacy_format", [False, True])
def test_a_pickle_that_would_write_a_file_is_refused(tmp_path, legacy_format):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "model.pt"
    torch.save(WritesAFile(marker), path, _use_new_zipfile_serialization=not legacy_format)
    with pytest.raises(
        ModelError, match="refusing to load a pickled model: unpickling can execute arbitrary code"
    ):
        load_model(ModelSpec(str(path), input_shape=(1, 8, 8)), work_dir=tmp_path)
    assert not marker.exists()


def test_a_plain_python_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(WritesAFile(marker)))
    with pytest.raises(ModelError, match="arbitrary code"):
        load_model(ModelSpec(str(path)), work_dir=tmp_path)
    assert not marker.exists()


def test_a_trusted_pickled_module_loads(tmp_path, factories, digits_cnn):
    import model_factories

    module = model_factories.make_cnn()
    module.load_state_dict(digits_cnn.state_dict())
    torch.save(module, tmp_path / "full.pt")
    spec = ModelSpec(
        str(tmp_path / "full.pt"), trust_pickle=True, input_shape=(1, 8, 8), exporter="torchscript"
    )
    model = load_model(spec, work_dir=tmp_path)
    assert model.source_kind == "pickle"
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(model.scores(x), digits_cnn(x).detach(), atol=1e-4, rtol=1e-4)


def test_a_pt2_archive_with_a_pickled_member_is_refused(tmp_path, digits_cnn):
    """``torch.export.load`` falls back to full unpickling for sample inputs; gate refuses to let it."""
    marker = tmp_path / "pwned.txt"
    program = torch.export.export(digits_cnn, (torch.rand(2, 1, 8, 8),))
    clean = tmp_path / "clean.pt2"
    torch.export.save(program, str(clean))
    evil_payload = tmp_path / "payload.pt"
    torch.save((WritesAFile(marker),), evil_payload)
    tampered = tmp_path / "tampered.pt2"
    with zipfile.ZipFile(clean) as source, zipfile.ZipFile(tampered, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("sample_inputs/model.pt"):
                data = evil_payload.read_bytes()
            target.writestr(item, data)
    with pytest.raises(ModelError, match=r"would run code from the file while loading: it holds a pickled"):
        load_model(ModelSpec(str(tampered)), work_dir=tmp_path)
    assert not marker.exists()


def test_weights_are_refused_for_a_source_that_has_its_own(tmp_path, cnn_weights):
    path = tmp_path / "scripted.ts"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(64, 10))), str(path))
    with pytest.raises(UsageError, match="weights does not apply to a TorchScript archive"):
        load_model(ModelSpec(str(path), weights=cnn_weights, input_shape=(1, 8, 8)), work_dir=tmp_path)


@pytest.mark.parametrize("legacy_format", [False, True])
def test_a_whole_pickled_model_as_weights_is_refused_in_gate_s_words(
    tmp_path, factories, digits_cnn, legacy_format
):
    """Not torch's half-sentence ("…you have two options, do those steps only if you trust…")."""
    path = tmp_path / "whole.pt"
    torch.save(digits_cnn, path, _use_new_zipfile_serialization=not legacy_format)
    with pytest.raises(ModelError) as caught:
        load_model(ModelSpec(f"{factories}:make_cnn", weights=path, input_shape=(1, 8, 8)), work_dir=tmp_path)
    message = str(caught.value)
    assert "is a pickle of Python objects that refers to gate.demo.models.DigitsCNN" in message
    assert "loading it would run code from the file" in message
    assert "--trust-pickle" in message and "state_dict" in message
    assert "two options" not in message and "\x1b" not in message


def test_a_zip_that_is_no_pytorch_archive(tmp_path):
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ModelError, match="found a zip archive with none of their markers"):
        load_model(ModelSpec(str(path)), work_dir=tmp_path)


def test_missing_model_file(tmp_path):
    with pytest.raises(
        ModelError,
        match=r"model file not found: expected an existing .* or a package\.module:factory reference",
    ):
        load_model(ModelSpec(str(tmp_path / "absent.onnx")), work_dir=tmp_path)


def test_missing_weights_file(tmp_path, factories):
    spec = ModelSpec(f"{factories}:make_cnn", weights=tmp_path / "absent.safetensors", input_shape=(1, 8, 8))
    with pytest.raises(ModelError, match="weights file not found"):
        load_model(spec, work_dir=tmp_path)


def test_an_onnx_file_without_the_extension_is_recognised_by_content(tmp_path):
    import onnx

    from .test_onnx_file import linear_model

    path = tmp_path / "model.bin"
    onnx.save_model(linear_model(), str(path))
    assert source_kind(ModelSpec(str(path))) == "onnx"
    assert load_model(ModelSpec(str(path)), work_dir=tmp_path).num_classes == 10


PT2_POLICY = """\
version: 1
name: pt2
checks:
  - id: pgd
    kind: adversarial
    attack: pgd
    norm: linf
    epsilon: 0.2
    steps: 10
    min: 0.4
  - id: sanity
    kind: model_sanity
    diagnostic_samples: 32
"""


def test_gate_check_on_a_torch_export_program_runs_every_gradient_check(
    tmp_path, digits_cnn, digits_npz, x_test
):
    """A legitimate .pt2 (dynamic batch) through ``gate check``: the checks call eval() on its module,
    which torch refuses for an exported program ("Calling train() is not supported yet")."""
    from click.testing import CliRunner

    from gate.cli import main
    from gate.report.model import Report

    batch = torch.export.Dim("batch")
    program = torch.export.export(digits_cnn, (x_test[:4],), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "cnn.pt2"))
    (tmp_path / "policy.yaml").write_text(PT2_POLICY, encoding="utf-8")
    out = tmp_path / "out"
    args = ["check", "-p", tmp_path / "policy.yaml", "-m", tmp_path / "cnn.pt2", "-d", digits_npz, "-o", out]
    result = CliRunner().invoke(main, [*map(str, args), "--samples", "100", "--device", "cpu"])
    report = Report.model_validate_json((out / "report.json").read_text())
    checks = {check.id: check for check in report.checks}
    assert report.model.source_kind == "torch.export"
    assert checks["sanity"].status == "pass" and checks["sanity"].findings == [], checks["sanity"].message
    assert checks["pgd"].status == "fail" and checks["pgd"].value < 0.1, checks["pgd"].message
    assert result.exit_code == 1, result.output  # the standard CNN fails the attack: fail, not error
