"""Converted scikit-learn, XGBoost and LightGBM models: two outputs (label + probabilities, or a ZipMap),
the output gate judges, the twin of the judged scores only, gradients where they exist, and the CLI."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from gate.errors import ModelError
from gate.model import ModelSpec, load_model, load_model_card, merge_spec

pytest.importorskip("skl2onnx")
from model.sklearn_models import cancer, forest_with_labels, sklearn_onnx, wine

TWIN_MODELS = ["logreg", "logreg-zipmap", "logreg-wine", "pipeline-wine", "mlp", "mlp-wine"]
TREE_MODELS = ["forest-zipmap", "forest", "boosting-zipmap", "boosting", "xgboost", "lightgbm"]
TREE_REASON = (
    "a tree ensemble (TreeEnsembleClassifier) is piecewise constant: it has no gradients; gradient attacks "
    "cannot run, the black-box constrained-search attack can"
)


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory):
    """``onnx_files(name) -> Path``, each model trained and converted once per module."""
    folder = tmp_path_factory.mktemp("sklearn")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name.split("-")[0] in ("xgboost", "lightgbm"):
            pytest.importorskip("onnxmltools")
            pytest.importorskip(name.split("-")[0])
        if name not in built:
            built[name] = sklearn_onnx(name, folder / f"{name}.onnx")
        return built[name]

    return get


def features(name: str, count: int = 60) -> torch.Tensor:
    x, _ = wine() if name.endswith("wine") else cancer()
    return torch.from_numpy(x[np.random.default_rng(1).permutation(len(x))[:count]])


def load(path: Path, tmp_path: Path, x: torch.Tensor, **options) -> object:
    return load_model(ModelSpec(str(path), device="cpu", **options), work_dir=tmp_path, example_input=x)


def onnxruntime_outputs(path: Path, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The file's label and probabilities from a plain ONNX Runtime session, a ZipMap unzipped by hand."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    label, scores = session.run(None, {"input": x.numpy()})
    if isinstance(scores, list):
        scores = np.array([[row[k] for k in sorted(row)] for row in scores], dtype=np.float32)
    return np.asarray(label), np.asarray(scores)


@pytest.mark.parametrize("name", TWIN_MODELS + TREE_MODELS)
def test_a_converted_model_loads_and_its_scores_are_the_files(name, onnx_files, tmp_path) -> None:
    path, x = onnx_files(name), features(name)
    model = load(path, tmp_path, x)
    label, scores = onnxruntime_outputs(path, x)
    np.testing.assert_allclose(model.scores(x).numpy(), scores, rtol=0, atol=0)
    assert model.num_classes == (3 if name.endswith("wine") else 2)
    assert torch.equal(model.decisions(x), torch.from_numpy(label.astype(np.int64)))
    assert model.scores_are_probabilities
    outputs = ["output_label", "output_probability"] if "zipmap" in name else ["label", "probabilities"]
    assert model.label_output == outputs[0]
    assert model.output_note is not None and model.output_note.startswith(
        f"the model has outputs {outputs}: gate judges {outputs[1]!r}"
    )
    assert f"{outputs[0]!r} is the model's own decision, compared in export_parity" in model.output_note


@pytest.mark.parametrize("name", TWIN_MODELS)
def test_linear_models_and_mlps_get_a_twin_with_gradients_of_logits(name, onnx_files, tmp_path) -> None:
    x = features(name)
    model = load(onnx_files(name), tmp_path, x)
    assert model.gradient_unavailable_reason is None, model.gradient_unavailable_reason
    assert model.twin_agreement is not None
    torch.testing.assert_close(model.source_scores(x), model.scores(x), atol=1e-5, rtol=1e-4)
    assert model.logits_recovered
    net = model.require_gradient_model()
    inputs = x.clone().requires_grad_(True)
    logits = net(inputs)
    assert torch.equal(logits.argmax(dim=1), model.scores(x).argmax(dim=1))
    assert not bool(((logits >= 0) & (logits <= 1)).all())  # logits, not the saturating probabilities
    (gradient,) = torch.autograd.grad(logits[:, -1].sum(), inputs)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0


def test_what_the_gradient_model_returns_is_said(onnx_files, tmp_path) -> None:
    logreg = load(onnx_files("logreg"), tmp_path, features("logreg"))
    assert logreg.logits_from.startswith("the LinearClassifier's raw scores")
    assert logreg.output_squashing == "sigmoid"
    mlp = load(onnx_files("mlp"), tmp_path, features("mlp"))
    assert "Concat(1 - sigmoid(z), sigmoid(z))" in mlp.logits_from and mlp.output_squashing == "softmax"
    mlp_wine = load(onnx_files("mlp-wine"), tmp_path, features("mlp-wine"))
    assert mlp_wine.logits_from == "the input of the model's final softmax (the logits before it)"


def test_probabilities_without_logits_to_recover_give_log_probabilities(tmp_path) -> None:
    """A softmax gate cannot see (multiplied by one, as LightGBM's converter writes) named probabilities."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).standard_normal((30, 2)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["input", "w"], ["z"]),
        helper.make_node("Softmax", ["z"], ["p"], axis=1),
        helper.make_node("Mul", ["p", "one"], ["probabilities"]),
    ]
    constants = [
        numpy_helper.from_array(weights, "w"),
        numpy_helper.from_array(np.ones(1, np.float32), "one"),
    ]
    graph = helper.make_graph(
        nodes,
        "hidden_softmax",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 30])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        constants,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save_model(proto, str(tmp_path / "hidden.onnx"))
    x = features("forest")
    model = load(tmp_path / "hidden.onnx", tmp_path, x)
    assert model.output_note is None and model.label_output is None and model.decisions(x) is None
    assert model.scores_are_probabilities and model.logits_recovered
    assert model.probabilities_from.startswith("an output named 'probabilities'")
    assert model.logits_from.startswith("the logarithm of the model's probabilities")
    torch.testing.assert_close(
        model.require_gradient_model()(x), torch.log(model.scores(x)), atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize("name", TREE_MODELS)
def test_a_tree_ensemble_has_no_gradients_and_says_so_plainly(name, onnx_files, tmp_path) -> None:
    model = load(onnx_files(name), tmp_path, features(name))
    assert model.gradient_model is None and not model.logits_recovered
    assert model.gradient_unavailable_reason == TREE_REASON
    assert not model.has_source_module


def test_output_chooses_the_scores_and_bad_names_are_errors(onnx_files, tmp_path) -> None:
    path, x = onnx_files("logreg"), features("logreg")
    chosen = load(path, tmp_path, x, output="probabilities")
    assert "gate judges 'probabilities' (chosen with output)" in chosen.output_note
    with pytest.raises(ModelError, match=r"output 'scores' is not an output of the model; its outputs are "):
        load(path, tmp_path, x, output="scores")
    with pytest.raises(ModelError, match=r"found tensor\(int64\) in output 'label'.*a decision"):
        load(path, tmp_path, x, output="label")


def test_the_model_card_s_output_reaches_the_spec(onnx_files, tmp_path) -> None:
    path = onnx_files("forest-zipmap")
    card = tmp_path / "gate-model.yaml"
    card.write_text(f"source: {path}\noutput: output_probability\n", encoding="utf-8")
    spec = merge_spec(load_model_card(card), device="cpu")
    assert spec.output == "output_probability"
    model = load_model(spec, work_dir=tmp_path)
    assert "(chosen with output)" in model.output_note and model.num_classes == 2
    card.write_text(f"source: {path}\noutput: [1]\n", encoding="utf-8")
    with pytest.raises(ModelError, match="output must be the name of one of the model's outputs"):
        load_model_card(card)


def test_output_also_picks_among_a_pytorch_forward_s_outputs(tmp_path) -> None:
    # For torch sources ``output`` chooses among the forward's outputs (tests/model/test_torch_outputs.py).
    spec = merge_spec(None, source="gate.demo.models:digits_cnn", output="logits")
    assert spec.output == "logits"


def test_a_string_keyed_zipmap_is_refused_with_the_hint(tmp_path) -> None:
    path = forest_with_labels(tmp_path / "strings.onnx", ["benign", "malignant"], zipmap=True)
    with pytest.raises(ModelError, match=r"a ZipMap keyed by class names") as caught:
        load(path, tmp_path, features("forest"))
    assert "zipmap=False" in str(caught.value)


def test_string_labels_without_zipmap_judge_the_probabilities(tmp_path) -> None:
    path = forest_with_labels(tmp_path / "strings.onnx", ["benign", "malignant"], zipmap=False)
    model = load(path, tmp_path, features("forest"))
    assert model.label_output is None and model.decisions(features("forest")) is None
    assert "gate judges 'probabilities'" in model.output_note


def test_a_zipmap_needs_keys_0_to_c_minus_1(tmp_path) -> None:
    path = forest_with_labels(tmp_path / "keys.onnx", [3, 7], zipmap=True)
    with pytest.raises(ModelError, match=r"the ZipMap's keys are \[3, 7\].*needs the keys 0\.\.1"):
        load(path, tmp_path, features("forest"))


def test_labels_other_than_0_to_c_minus_1_become_column_indices(tmp_path) -> None:
    path = forest_with_labels(tmp_path / "labels.onnx", [3, 7], zipmap=False)
    x = features("forest")
    model = load(path, tmp_path, x)
    label, _ = onnxruntime_outputs(path, x)
    assert set(label.tolist()) <= {3, 7}
    assert torch.equal(model.decisions(x), torch.from_numpy((label == 7).astype(np.int64)))


# --------------------------------------------------------------------- the CLI, end to end
POLICY = """
    version: 1
    name: forest
    checks:
      - id: accuracy
        kind: accuracy
        min: 0.85
      - id: parity
        kind: export_parity
        min: 0.95
"""


def test_gate_check_judges_a_random_forest(onnx_files, tmp_path) -> None:
    from gate.cli import main
    from gate.report.model import Report

    x, y = cancer()
    order = np.random.default_rng(0).permutation(len(x))[:150]
    data = tmp_path / "test.npz"
    np.savez(data, x=x[order], y=y[order])
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent(POLICY).lstrip(), encoding="utf-8")
    report_dir = tmp_path / "out"
    arguments = ["check", "--policy", str(policy), "--model", str(onnx_files("forest-zipmap"))]
    arguments += [
        "--model-output",
        "output_probability",
        "--data",
        str(data),
        "--report-dir",
        str(report_dir),
    ]
    result = CliRunner().invoke(main, [*arguments, "--device", "cpu"])
    assert "Traceback" not in result.output
    report = Report.model_validate_json((report_dir / "report.json").read_text())
    assert not [c.message for c in report.checks if c.status == "error"], result.output
    checks = {c.id: c for c in report.checks}
    assert checks["accuracy"].value > 0.85
    parity = checks["parity"]
    assert parity.details["compared_with"] == "the model's own label output"
    assert parity.details["label_agreement_clean"] == 1.0
    assert "nothing was exported and there is no twin" in parity.message
    assert result.exit_code == 0, result.output


def test_gate_check_judges_an_mlp_with_zipmap_as_onnxruntime_does(onnx_files, tmp_path) -> None:
    """The done-when of issue 22 for converted models: an skl2onnx MLP with its default ZipMap, judged on
    its probabilities, with an accuracy equal to a plain onnxruntime computation and white-box attacks
    through its twin."""
    from gate.cli import main
    from gate.report.model import Report

    x, y = cancer()
    order = np.random.default_rng(0).permutation(len(x))[:150]
    data = tmp_path / "test.npz"
    np.savez(data, x=x[order], y=y[order])
    policy = tmp_path / "policy.yaml"
    attack = "  - {id: pgd, kind: adversarial, attack: pgd, epsilon: 0.05, steps: 10, min: 0.0}\n"
    policy.write_text(textwrap.dedent(POLICY).lstrip().replace("0.85", "0.8") + attack, encoding="utf-8")
    path = onnx_files("mlp-zipmap")
    report_dir = tmp_path / "out"
    arguments = ["check", "--policy", str(policy), "--model", str(path), "--data", str(data)]
    result = CliRunner().invoke(main, [*arguments, "--report-dir", str(report_dir), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = Report.model_validate_json((report_dir / "report.json").read_text())
    checks = {c.id: c for c in report.checks}
    label, scores = onnxruntime_outputs(path, torch.from_numpy(x[order]))
    assert checks["accuracy"].value == pytest.approx(float((scores.argmax(1) == y[order]).mean()), abs=1e-12)
    assert float((label == y[order]).mean()) == checks["accuracy"].value  # the label agrees with the argmax
    assert checks["parity"].details["label_agreement_clean"] == 1.0
    assert "output_probability" in report.model.notes[0] and "ZipMap" in report.model.notes[0]
    assert checks["pgd"].status == "pass" and checks["pgd"].value < checks["accuracy"].value
