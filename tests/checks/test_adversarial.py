"""adversarial: the headline contrast (standard model breaks, PGD-trained model holds), ONNX re-scoring,
budgets, evidence and failure modes."""

from __future__ import annotations

import pytest
import torch

from checks.conftest import only_check

POLICY = """
    version: 1
    name: adversarial
    checks:
      - id: attack
        kind: adversarial
        attack: {attack}
        norm: {norm}
        epsilon: {epsilon}
        min: 0.4
        {extra}
    """


def policy(attack: str = "pgd", norm: str = "linf", epsilon: float = 0.2, extra: str = "") -> str:
    return POLICY.format(attack=attack, norm=norm, epsilon=epsilon, extra=extra)


def test_standard_model_fails_and_pgd_trained_model_passes(
    factory_run, standard_weights, robust_weights, digits_npz
):
    factory = "gate.demo.models:digits_cnn"
    standard = only_check(factory_run(policy(extra="steps: 20"), factory, standard_weights, digits_npz))
    robust = only_check(factory_run(policy(extra="steps: 20"), factory, robust_weights, digits_npz))
    assert standard.status == "fail" and standard.value < 0.1, standard.message
    assert robust.status == "pass" and robust.value > 0.45, robust.message
    assert standard.details["clean_accuracy"] > 0.95
    assert standard.details["attack_success_rate"] > 0.9
    assert 0 < standard.details["perturbation_median"] <= 0.2 + 1e-6
    assert standard.artifacts == ["artifacts/attack/examples.png", "artifacts/attack/epsilon-curve.png"]
    # The ε-curve: clean accuracy at 0, the check's own number at ε, falling as the ball grows.
    for check in (standard, robust):
        curve = check.details["epsilon_curve"]
        assert curve["epsilon"] == [0.0, 0.1, 0.2, 0.4]
        accuracy = curve["robust_accuracy"]
        assert accuracy[0] == pytest.approx(check.details["clean_accuracy"]) and accuracy[2] == check.value
        assert accuracy == sorted(accuracy, reverse=True), curve
    assert robust.details["epsilon_curve"]["robust_accuracy"][-1] < robust.value


@pytest.mark.parametrize(
    ("attack", "norm", "epsilon"),
    [
        ("fgsm", "linf", 0.2),
        ("apgd-ce", "l2", 1.5),
        ("apgd-dlr", "linf", 0.2),
        ("fab", "linf", 0.2),
        ("square", "linf", 0.2),
        ("autoattack", "linf", 0.2),
    ],
)
def test_each_attack_lowers_robust_accuracy_of_the_standard_model(
    gate_run, digits_cnn_onnx, digits_npz, attack, norm, epsilon
):
    extra = {"square": "queries: 300", "autoattack": "steps: 10\n        queries: 100"}.get(attack, "")
    if attack in ("apgd-ce", "apgd-dlr", "fab"):
        extra = "steps: 20"
    check = only_check(
        gate_run(policy(attack, norm, epsilon, extra), digits_cnn_onnx, digits_npz, samples=100)
    )
    assert check.status in ("pass", "fail"), check.message
    assert check.value < check.details["clean_accuracy"] - 0.3, check.message
    if attack == "square":
        assert check.details["gradients_from"] == "none (score-based)"


def test_an_example_outside_the_budget_is_an_error_not_a_number(
    gate_run, digits_cnn_onnx, digits_npz, monkeypatch
):
    from gate.attacks.base import AttackOutcome
    from gate.attacks.fgsm import FGSM

    def cheat(self, model, x, y, *, index=None):
        x_adv = (x + 0.5).clamp(0, 1)  # far outside eps = 0.1
        return AttackOutcome(x_adv=x_adv, robust=torch.zeros(len(x), dtype=torch.bool))

    monkeypatch.setattr(FGSM, "perturb", cheat)
    report = gate_run(policy("fgsm", "linf", 0.1), digits_cnn_onnx, digits_npz, samples=50)
    check = only_check(report)
    assert check.status == "error" and "eps" in check.message
    assert report.verdict == "error" and report.exit_code == 3


# --------------------------------------------------------------------- non-finite gradients
@pytest.mark.parametrize(
    ("attack", "norm", "epsilon", "extra"),
    [
        ("fgsm", "linf", 0.2, ""),
        ("pgd", "linf", 0.2, "steps: 5"),
        ("apgd-ce", "l2", 1.5, "steps: 5"),
        ("autoattack", "linf", 0.2, "steps: 3\n        queries: 20"),
    ],
)
def test_nan_gradients_end_the_check_as_error(
    factory_run, masked_weights, digits_npz, attack, norm, epsilon, extra
):
    """Without model_sanity in the policy: sign(NaN) is 0, so the attack stood still and the model 'passed'."""
    report = factory_run(
        policy(attack, norm, epsilon, extra),
        "masked_models:nan_gradient_cnn",
        masked_weights,
        digits_npz,
        samples=40,
    )
    check = only_check(report)
    assert check.status == "error", check.message
    assert "non-finite values (NaN or inf) in the gradient model's logits or input gradients" in check.message
    assert report.exit_code == 3


def test_the_finite_watch_adds_no_host_sync_per_step(digits_split, digits_cnn):
    from gate.attacks.base import FiniteWatch
    from gate.attacks.pgd import PGD
    from tests.attacks.helpers import HostSyncCounter

    x = torch.from_numpy(digits_split["x_test"][:50])
    y = torch.from_numpy(digits_split["y_test"][:50])
    attack = PGD(norm="linf", eps=0.1, steps=40)
    with HostSyncCounter() as bare:
        attack.perturb(digits_cnn, x, y)
    watch = FiniteWatch(digits_cnn, x.device)
    with HostSyncCounter() as watched:
        attack.perturb(watch, x, y)
    assert watched.syncs == bare.syncs and bool(watch.finite)


# --------------------------------------------------------------------- probability outputs
def test_a_sigmoid_model_is_attacked_through_its_logits(
    gate_run, sigmoid_digits_cnn_onnx, digits_cnn_onnx, digits_npz
):
    """Through the saturated sigmoid, PGD 'robust' accuracy was 0.53 (a pass at min 0.4); through the
    logits it is what the same CNN without the head gets."""
    squashed = only_check(gate_run(policy(extra="steps: 20"), sigmoid_digits_cnn_onnx, digits_npz))
    plain = only_check(gate_run(policy(extra="steps: 20"), digits_cnn_onnx, digits_npz))
    assert squashed.status == "fail" and squashed.value < 0.1, squashed.message
    assert abs(squashed.value - plain.value) <= 3 / 297
    assert squashed.details["gradients_of"].startswith("the input of the model's final sigmoid")


def test_fgsm_on_a_sigmoid_model_matches_its_logits(
    gate_run, sigmoid_digits_cnn_onnx, digits_cnn_onnx, digits_npz
):
    # The plain attack through the logits (the escalation would add APGD-T on the probability outputs).
    squashed = only_check(
        gate_run(policy("fgsm", extra="adaptive: off"), sigmoid_digits_cnn_onnx, digits_npz)
    )
    plain = only_check(gate_run(policy("fgsm"), digits_cnn_onnx, digits_npz))
    assert squashed.status == "fail" and abs(squashed.value - plain.value) <= 3 / 297, squashed.message
    escalated = only_check(gate_run(policy("fgsm"), sigmoid_digits_cnn_onnx, digits_npz))
    assert (
        escalated.value <= squashed.value
        and escalated.details["adaptive"]["diagnosis"]["probability_outputs"]
    )


def test_probabilities_gate_cannot_look_behind_end_white_box_checks_as_error(
    gate_run, hardsigmoid_digits_cnn_onnx, digits_npz
):
    check = only_check(
        gate_run(policy("pgd", extra="steps: 5"), hardsigmoid_digits_cnn_onnx, digits_npz, samples=50)
    )
    assert check.status == "error"
    assert "every output of the deployed model lies in [0, 1]" in check.message
    square = only_check(
        gate_run(policy("square", extra="queries: 50"), hardsigmoid_digits_cnn_onnx, digits_npz, samples=50)
    )
    assert square.status in ("pass", "fail"), square.message  # score-based: the session's scores suffice
