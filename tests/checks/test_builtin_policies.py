"""The built-in policies do what their comments promise on real models (the demo runs demo-digits)."""

from __future__ import annotations

import numpy as np
import pytest

from gate.policy import builtin_policy_names, load_policy


def test_every_builtin_policy_validates():
    names = builtin_policy_names()
    assert {"baseline", "robust-image-classifier", "explainable", "strict", "demo-digits"} <= set(names)
    for name in names:
        assert load_policy(f"builtin:{name}").policy.checks


@pytest.fixture()
def ink_masked_npz(tmp_path, digits_split):
    x = digits_split["x_test"][:60]
    path = tmp_path / "masked.npz"
    np.savez(path, x=x, y=digits_split["y_test"][:60], mask=(x[:, 0] > 0.2).astype(np.float32))
    return path


def test_explainable_passes_a_standard_digits_model(factory_run, standard_weights, ink_masked_npz):
    report = factory_run("version: 1\nextends: [builtin:explainable]\n", "gate.demo.models:digits_cnn",
                         standard_weights, ink_masked_npz)  # fmt: skip
    explanations = {check.id: check for check in report.checks if check.kind == "attribution"}
    assert set(explanations) == {"saliency-sanity", "faithfulness", "on-the-evidence", "stability"}
    failing = {check.id: check.message for check in explanations.values() if check.status != "pass"}
    assert not failing
    # 60 samples cannot prove 98% export agreement at 95% confidence; the policy asks for 200.
    assert load_policy("builtin:explainable").policy.samples == 200


@pytest.mark.slow
def test_strict_runs_autoattack_and_blocks_a_standard_model(factory_run, standard_weights, digits_npz):
    report = factory_run(
        "version: 1\nextends: [builtin:strict]\nchecks:\n"
        "  - {id: autoattack-linf, kind: adversarial, attack: autoattack, epsilon: 0.2, steps: 10, queries: 100, min: 0.4}\n",
        "gate.demo.models:digits_cnn", standard_weights, digits_npz, samples=30,
    )  # fmt: skip
    autoattack = next(check for check in report.checks if check.id == "autoattack-linf")
    assert autoattack.status == "fail" and autoattack.value < 0.1, autoattack.message
    assert report.verdict in ("fail", "error")


def test_human_aligned_runs_every_check_on_a_digits_model_that_reads_the_ink(
    factory_run, standard_weights, ink_masked_npz
):
    """The digits' object is the ink and their background is black everywhere: moving the ink onto other
    digits' backgrounds changes nothing (bg_gap 0), and the background alone predicts nothing."""
    report = factory_run("version: 1\nextends: [builtin:human-aligned]\n", "gate.demo.models:digits_cnn",
                         standard_weights, ink_masked_npz)  # fmt: skip
    checks = {check.id: check for check in report.checks}
    assert {"bg-gap", "only-background", "worst-class", "calibration"} <= set(checks)
    assert not [check.message for check in checks.values() if check.status == "error"]
    assert checks["bg-gap"].status == "pass" and checks["bg-gap"].value <= 0.05
    assert checks["only-background"].status == "pass" and checks["only-background"].value < 0.3
    assert checks["calibration"].value < 0.05 and checks["calibration"].artifacts
    worst = checks["worst-class"]
    assert worst.details["judged_groups"] == 10 and worst.value >= 0.5 and worst.artifacts
