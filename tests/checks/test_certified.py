"""The ``certified`` check end to end: smoothing certifies a noise-trained model and not a standard one,
interval bounds never verify more than an attack leaves robust, shards merge, unsupported ops fail closed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import write_policy
from onnx import TensorProto, helper
from safetensors.torch import save_file

from gate.cli import main
from gate.demo.models import DigitsCNN, train

SMOOTHING_POLICY = """
    version: 1
    name: certified
    samples: 60
    checks:
      - id: certified
        kind: certified
        sigma: 0.5
        radius: 0.25
        n0: 50
        n: 300
        min: 0.4
"""


def gate_check(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", *map(str, args)], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def report_checks(report_dir: Path) -> dict[str, dict]:
    report = json.loads((report_dir / "report.json").read_text())
    return {check["id"]: check for check in report["checks"]}


@pytest.fixture(scope="module")
def noise_trained_weights(tmp_path_factory, digits_split) -> Path:
    """A digits CNN trained with Gaussian noise of sigma 0.5 (Cohen et al.'s training for smoothing)."""
    model = train(DigitsCNN, digits_split["x_train"], digits_split["y_train"], noise_sigma=0.5)
    path = tmp_path_factory.mktemp("noise") / "noise.safetensors"
    save_file(model.state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def standard_weights_file(tmp_path_factory, digits_cnn) -> Path:
    path = tmp_path_factory.mktemp("standard") / "standard.safetensors"
    save_file(digits_cnn.state_dict(), str(path))
    return path


def test_smoothing_certifies_a_noise_trained_model_and_not_a_standard_one(
    tmp_path, digits_npz, noise_trained_weights, standard_weights_file
):
    policy = write_policy(tmp_path / "policy.yaml", SMOOTHING_POLICY)
    results = {}
    for name, weights in (("noise", noise_trained_weights), ("standard", standard_weights_file)):
        report_dir = tmp_path / name
        gate_check("-p", policy, "-m", "gate.demo.models:digits_cnn", "-w", weights, "-d", digits_npz,
                   "-o", report_dir)  # fmt: skip
        results[name] = report_checks(report_dir)["certified"]
    noise, standard = results["noise"], results["standard"]
    assert (noise["status"], standard["status"]) == ("pass", "fail"), (noise["message"], standard["message"])
    assert noise["metric"] == "certified_accuracy" and noise["n"] == 60
    assert noise["interval"]["lower"] <= noise["value"] <= noise["interval"]["upper"]
    assert noise["value"] > standard["value"] + 0.2
    details = noise["details"]
    assert details["forward_passes"] == 60 * 350
    curve = dict((round(r, 6), a) for r, a in details["certified_accuracy_curve"])
    assert curve[0.0] >= noise["value"]  # certified at radius 0 is at least certified at the policy's radius
    values = [a for _, a in details["certified_accuracy_curve"]]
    assert values == sorted(values, reverse=True)  # the curve never rises with the radius
    assert 0.0 <= details["abstain_rate"] < 0.5 and details["smoothed_accuracy"] > 0.8
    assert noise["artifacts"] == ["artifacts/certified/certified_accuracy_curve.png"]
    assert (tmp_path / "noise" / noise["artifacts"][0]).read_bytes().startswith(b"\x89PNG")
    html = (tmp_path / "noise" / "report.html").read_text()
    assert "certified_accuracy_curve.png" in html and "data:image/png;base64," in html


def test_smoothing_shards_merge_to_the_unsharded_result(tmp_path, digits_npz, noise_trained_weights):
    policy = write_policy(tmp_path / "policy.yaml", SMOOTHING_POLICY.replace("samples: 60", "samples: 24"))
    common = [
        "-p",
        policy,
        "-m",
        "gate.demo.models:digits_cnn",
        "-w",
        noise_trained_weights,
        "-d",
        digits_npz,
    ]
    gate_check(*common, "-o", tmp_path / "full")
    for k in (1, 2):
        gate_check(*common, "-o", tmp_path / f"s{k}", "--shard", f"{k}/2")
    result = CliRunner().invoke(
        main, ["merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--report-dir", str(tmp_path / "merged")]
    )
    assert result.exit_code in (0, 1), result.output
    full, merged = (
        report_checks(tmp_path / "full")["certified"],
        report_checks(tmp_path / "merged")["certified"],
    )
    for key in ("status", "value", "interval", "n", "successes"):
        assert merged[key] == full[key], key


def test_interval_bounds_never_verify_more_than_an_attack_leaves_robust(
    tmp_path, digits_npz, digits_cnn_onnx
):
    policy = write_policy(
        tmp_path / "policy.yaml",
        """
        version: 1
        name: verified
        samples: 100
        checks:
          - {id: verified, kind: certified, method: interval_bounds, norm: linf, radius: 0.005, min: 0.0}
          - {id: pgd, kind: adversarial, attack: pgd, epsilon: 0.005, steps: 20, min: 0.0}
        """,
    )
    code, output = gate_check("-p", policy, "-m", digits_cnn_onnx, "-d", digits_npz, "-o", tmp_path / "r")
    assert code == 0, output
    checks = report_checks(tmp_path / "r")
    verified, pgd = checks["verified"], checks["pgd"]
    assert verified["metric"] == "verified_accuracy" and verified["status"] == "pass"
    assert verified["successes"] > 0  # a tiny radius verifies some digits even on a standard model
    assert verified["value"] <= pgd["value"] <= verified["details"]["clean_accuracy"]


def test_an_operator_without_a_bound_rule_is_an_error_that_names_it(tmp_path, digits_npz):
    weights = helper.make_tensor("w", TensorProto.FLOAT, [64, 10], np.random.default_rng(0).normal(size=640))
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 64])
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["input", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["z"]),
            helper.make_node("Sin", ["z"], ["logits"]),
        ],
        "sin",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        initializer=[weights, shape],
    )
    path = tmp_path / "sin.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save_model(model, str(path))
    policy = write_policy(
        tmp_path / "policy.yaml",
        """
        version: 1
        name: verified
        checks:
          - {id: verified, kind: certified, method: interval_bounds, norm: linf, radius: 0.01, min: 0.0}
        """,
    )
    code, _ = gate_check("-p", policy, "-m", path, "-d", digits_npz, "-o", tmp_path / "r")
    check = report_checks(tmp_path / "r")["verified"]
    assert code == 3 and check["status"] == "error"
    assert "Sin" in check["message"]
