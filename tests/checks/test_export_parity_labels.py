"""export_parity on converted scikit-learn models: the model's own label output against the scores gate
judges, beside the twin where there is one and alone for a tree ensemble; refusals without either."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from checks.conftest import only_check

pytest.importorskip("skl2onnx")
from model.sklearn_models import cancer, sklearn_onnx

POLICY = """
    version: 1
    name: parity
    checks:
      - id: parity
        kind: export_parity
        min: 0.95
        {extra}
    """


@pytest.fixture(scope="module")
def cancer_npz(tmp_path_factory: pytest.TempPathFactory):
    x, y = cancer()
    order = np.random.default_rng(0).permutation(len(x))[:120]
    path = tmp_path_factory.mktemp("cancer") / "test.npz"
    np.savez(path, x=x[order], y=y[order])
    return path


def test_a_twin_and_the_label_output_are_both_compared(gate_run, tmp_path, cancer_npz) -> None:
    model = sklearn_onnx("logreg", tmp_path / "logreg.onnx")
    check = only_check(gate_run(POLICY.format(extra=""), model, cancer_npz))
    assert check.status == "pass", check.message
    assert check.details["compared_with"] == "its PyTorch twin"
    assert check.details["label_agreement_clean"] == check.details["label_agreement_noisy"] == 1.0
    assert "label output matches its scores' class everywhere" in check.message


def test_a_tree_ensemble_is_judged_on_its_label_output(gate_run, tmp_path, cancer_npz) -> None:
    model = sklearn_onnx("boosting", tmp_path / "boosting.onnx")
    check = only_check(gate_run(POLICY.format(extra=""), model, cancer_npz))
    assert check.status == "pass", check.message
    assert check.details["compared_with"] == "the model's own label output"
    assert check.details["label_agreement_clean"] == 1.0 and check.n == 120
    assert "nothing was exported and there is no twin; the deployed label output is compared" in check.message


def test_max_abs_diff_without_a_twin_is_an_error(gate_run, tmp_path, cancer_npz) -> None:
    model = sklearn_onnx("boosting", tmp_path / "boosting.onnx")
    check = only_check(gate_run(POLICY.format(extra="max_abs_diff: 0.01"), model, cancer_npz))
    assert check.status == "error"
    assert "max_abs_diff bounds the logit difference" in check.message


def test_no_twin_and_no_label_output_is_an_error(gate_run, tmp_path, cancer_npz) -> None:
    weights = np.random.default_rng(0).standard_normal((30, 2)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["z"]), helper.make_node("Hardmax", ["z"], ["y"])],
        "hardmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 30])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        [numpy_helper.from_array(weights, "w")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    path = tmp_path / "hardmax.onnx"
    onnx.save_model(proto, str(path))
    check = only_check(gate_run(POLICY.format(extra=""), path, cancer_npz))
    assert check.status == "error"
    assert (
        "there is none: the ONNX graph uses operator(s) the twin does not implement: Hardmax" in check.message
    )
    assert "nor has the model a label output" in check.message
