"""``gate/model/torch_outputs.py``: a PyTorch forward's tuple, dict or ModelOutput resolved to one logits tensor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from gate.errors import ModelError
from gate.model import ModelSpec, load_model
from gate.model.spec import merge_spec
from gate.model.torch_outputs import resolve_output

HERE = Path(__file__).parent
SHAPE = (1, 8, 8)


@pytest.fixture()
def outputs_module(monkeypatch: pytest.MonkeyPatch):
    """``torch_output_factories`` importable by name; returns the module."""
    monkeypatch.syspath_prepend(str(HERE))
    import torch_output_factories

    return torch_output_factories


def chosen_logits(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module.parts(x)[0]


GOOD = [
    ("tuple_model", "0", "a tuple of 2: gate judges element 0 (chosen with output)", "tuple"),
    ("tuple_embedding_first", "1", "gate judges element 1 (chosen with output)", "tuple_embedding_first"),
    ("dict_with_logits", None, "a dict: gate judges its logits", "dict_logits"),
    ("dict_without_logits", None, "a dict: gate judges 'scores' (its only tensor)", "dict_scores"),
    ("dict_of_two", "scores", "gate judges 'scores' (chosen with output)", "dict_two"),
    ("keyed_output", None, "a KeyedOutput: gate judges its logits", "keyed"),
    ("dataclass_output", None, "a ClassifierOutput: gate judges its logits", "dataclass"),
]


@pytest.mark.parametrize(("factory", "output", "note", "style"), GOOD)
def test_the_chosen_output_is_what_the_session_and_the_gradient_model_return(
    tmp_path, outputs_module, factory, output, note, style
) -> None:
    spec = merge_spec(None, source=f"torch_output_factories:{factory}", input_shape=SHAPE, output=output)
    model = load_model(spec, work_dir=tmp_path)
    assert model.output_note is not None and note in model.output_note
    x = torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(1))
    expected = chosen_logits(outputs_module.make(style), x)
    torch.testing.assert_close(model.scores(x), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.source_scores(x), expected, atol=1e-5, rtol=1e-5)
    gradient_model = model.require_gradient_model()
    xg = x.clone().requires_grad_(True)
    logits = gradient_model(xg)
    assert isinstance(logits, torch.Tensor)
    torch.testing.assert_close(logits.detach(), expected, atol=1e-5, rtol=1e-5)
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0, 1])).backward()
    assert xg.grad is not None and bool(torch.isfinite(xg.grad).all()) and bool(xg.grad.abs().sum() > 0)


def test_a_plain_tensor_is_unchanged_and_has_no_note(tmp_path, outputs_module) -> None:
    model = load_model(ModelSpec("torch_output_factories:tensor_model", input_shape=SHAPE), work_dir=tmp_path)
    assert model.output_note is None
    x = torch.rand(4, *SHAPE)
    torch.testing.assert_close(
        model.scores(x), chosen_logits(outputs_module.make("tensor"), x), atol=1e-5, rtol=0
    )


def test_output_beside_a_plain_tensor_is_refused(tmp_path, outputs_module) -> None:
    spec = ModelSpec("torch_output_factories:tensor_model", input_shape=SHAPE, output="0")
    with pytest.raises(
        ModelError, match=r"the forward returns one tensor \[2, 3\]: there is nothing to choose"
    ):
        load_model(spec, work_dir=tmp_path)


def test_an_ambiguous_tuple_names_the_candidates_and_their_shapes(tmp_path, outputs_module) -> None:
    spec = ModelSpec("torch_output_factories:tuple_model", input_shape=SHAPE)
    with pytest.raises(ModelError) as caught:
        load_model(spec, work_dir=tmp_path)
    message = str(caught.value)
    assert "a tuple of 2 with 2 tensors (0: [2, 3], 1: [2, 16])" in message
    assert "gate cannot tell which are the logits" in message and "output:" in message


def test_a_dict_of_two_tensors_without_logits_names_its_keys(tmp_path, outputs_module) -> None:
    spec = ModelSpec("torch_output_factories:dict_of_two", input_shape=SHAPE)
    with pytest.raises(
        ModelError, match=r"no 'logits' key and 2 tensors \('scores': \[2, 3\], 'embedding': \[2, 16\]\)"
    ):
        load_model(spec, work_dir=tmp_path)


def test_an_output_that_names_nothing_lists_what_there_is(tmp_path, outputs_module) -> None:
    with pytest.raises(ModelError, match=r"output 'probs' is not a key of the dict .* its keys are 'scores'"):
        load_model(
            ModelSpec("torch_output_factories:dict_of_two", input_shape=SHAPE, output="probs"),
            work_dir=tmp_path,
        )
    with pytest.raises(
        ModelError, match=r"expected an index 0..1; its elements are 0: \[2, 3\], 1: \[2, 16\]"
    ):
        load_model(
            ModelSpec("torch_output_factories:tuple_model", input_shape=SHAPE, output="2"), work_dir=tmp_path
        )


def test_the_rule_on_values() -> None:
    logits, other = torch.zeros(2, 3), torch.zeros(2, 4)
    assert resolve_output(logits, None) is None
    assert resolve_output((logits, None), None).key == 0  # the only tensor of the tuple
    assert resolve_output({"logits": logits, "x": other}, None).key == "logits"
    with pytest.raises(ModelError, match="element 0 is NoneType, not a tensor"):
        resolve_output((None, logits), "0")
    with pytest.raises(ModelError, match="expected a tensor of logits, a tuple, a dict"):
        resolve_output(3.0, None)


def test_a_torch_export_program_with_two_outputs(tmp_path, outputs_module) -> None:
    module = outputs_module.make("tuple")
    path = tmp_path / "two.pt2"
    torch.export.save(torch.export.export(module, (torch.rand(2, *SHAPE),)), str(path))
    model = load_model(ModelSpec(str(path), output="0"), work_dir=tmp_path / "work")
    x = torch.rand(3, *SHAPE)
    torch.testing.assert_close(model.scores(x), chosen_logits(module, x), atol=1e-5, rtol=1e-5)
    assert model.require_gradient_model()(x).shape == (3, 3)


def test_the_torchscript_exporter_sees_the_chosen_output(tmp_path, outputs_module) -> None:
    spec = ModelSpec("torch_output_factories:dataclass_output", input_shape=SHAPE, exporter="torchscript")
    model = load_model(spec, work_dir=tmp_path)
    x = torch.rand(3, *SHAPE)
    torch.testing.assert_close(
        model.scores(x), chosen_logits(outputs_module.make("tuple"), x), atol=1e-5, rtol=1e-5
    )


def test_a_hugging_face_vit_is_judged_on_its_logits(tmp_path, outputs_module) -> None:
    pytest.importorskip("transformers")
    spec = ModelSpec("torch_output_factories:tiny_vit", input_shape=(1, 16, 16))
    model = load_model(spec, work_dir=tmp_path)
    assert model.output_note == "the forward returns an ImageClassifierOutput: gate judges its logits"
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        expected = outputs_module.tiny_vit()(x).logits
    torch.testing.assert_close(model.scores(x), expected, atol=1e-5, rtol=1e-5)
    assert bool(torch.isfinite(model.require_gradient_model()(x)).all())
