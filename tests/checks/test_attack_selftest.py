"""attack_selftest: a sound attack finds the planted adversarial examples; a weakened attack and a model that
hides its gradients do not; invalid samples are left out and named; sharded runs merge to the same number."""

from __future__ import annotations

import pytest
import torch

from checks.conftest import only_check
from gate.checks.attack_selftest import (
    INVALID_REASONS,
    NOT_SEPARABLE,
    BinaryReadout,
    fit_readout,
    planted_directions,
)
from gate.randomness.streams import SampleRandom

QUANTISED = "masked_models:quantized_cnn"

POLICY = """
    version: 1
    name: selftest
    confidence: null
    checks:
      - id: selftest
        kind: attack_selftest
        epsilon: 0.2
        samples: {samples}
        {extra}
    """


def policy(samples: int = 24, extra: str = "steps: 20") -> str:
    return POLICY.format(samples=samples, extra=extra)


def test_pgd_finds_the_planted_examples_on_the_standard_model(gate_run, digits_cnn_onnx, digits_npz):
    check = only_check(gate_run(policy(), digits_cnn_onnx, digits_npz))
    assert check.status == "pass", check.message
    assert check.metric == "planted_found_rate" and check.value >= 0.95
    details = check.details
    assert details["samples_tried"] == 24 and details["valid"] == check.n
    assert details["valid"] + details["invalid"] + details["misclassified"] == 24
    assert details["found"] == check.successes and details["attack"].startswith("PGD(")
    assert "cannot be trusted" not in check.message


def test_a_weakened_attack_fails_the_selftest(gate_run, digits_cnn_onnx, digits_npz):
    weak = policy(samples=16, extra="steps: 1\n        step_size: 0.001")
    check = only_check(gate_run(weak, digits_cnn_onnx, digits_npz))
    assert check.status == "fail" and check.value < 0.5, check.message
    assert "cannot be trusted" in check.message
    assert len(check.details["missed_samples"]) == 10


def test_input_quantisation_hides_the_planted_examples_from_pgd(factory_run, masked_weights, digits_npz):
    plain = policy(extra="steps: 5\n        adaptive: off")
    check = only_check(factory_run(plain, QUANTISED, masked_weights, digits_npz))
    assert check.status == "fail" and check.value == 0.0, check.message
    assert check.details["valid"] >= 20, "the quantised logits still separate the planted points"
    assert "cannot be trusted" in check.message
    assert "gradient_escalation" not in check.details


def test_with_adaptive_auto_pgd_finds_them_through_the_bpda_twin(factory_run, masked_weights, digits_npz):
    """The self-test vouches for the attack as the adversarial check runs it: on the quantised model,
    through the straight-through twin the escalation uses."""
    check = only_check(factory_run(policy(extra="steps: 20"), QUANTISED, masked_weights, digits_npz))
    assert check.details["gradient_escalation"]["name"] == "BPDA", check.details
    assert check.value >= 0.9, check.message


def test_samples_whose_logits_cannot_separate_are_left_out_and_named(
    gate_run, digits_cnn_onnx, digits_npz, monkeypatch
):
    from gate.checks import attack_selftest

    fit = attack_selftest.fit_readout
    calls = {"n": 0}

    def refuse_the_first_three(features):
        weight, threshold, separable = fit(features)
        calls["n"] += 1
        return weight, threshold, separable and calls["n"] > 3 * attack_selftest.ATTEMPTS

    monkeypatch.setattr(attack_selftest, "fit_readout", refuse_the_first_three)
    check = only_check(gate_run(policy(samples=12, extra="steps: 5"), digits_cnn_onnx, digits_npz))
    details = check.details
    assert details["invalid"] == 3 and check.n == details["valid"] == 12 - 3 - details["misclassified"]
    assert details["invalid_reasons"] == {INVALID_REASONS[NOT_SEPARABLE]: 3}
    assert len(details["invalid_samples"]) == 3
    assert "3 sample(s) left out" in check.message


def test_a_sharded_run_merges_to_the_unsharded_number(tmp_path, digits_cnn_onnx, digits_npz):
    import json
    import textwrap

    from click.testing import CliRunner

    from gate.cli import main

    path = tmp_path / "policy.yaml"
    path.write_text(textwrap.dedent(policy(samples=12, extra="steps: 2\n        step_size: 0.02")))
    common = ["check", "-p", path, "-m", digits_cnn_onnx, "-d", digits_npz]

    def gate(*args) -> dict:
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert "Traceback" not in result.output, result.output
        folder = args[args.index("-o") + 1]
        (check,) = json.loads((folder / "report.json").read_text())["checks"]
        return check

    full = gate(*common, "-o", tmp_path / "full")
    assert gate(*common, "-o", tmp_path / "s2", "--shard", "2/2")["details"] == {"deferred_to_shard": 1}
    assert gate(*common, "-o", tmp_path / "s1", "--shard", "1/2")["value"] == full["value"]
    merged = gate("merge", tmp_path / "s1", tmp_path / "s2", "-o", tmp_path / "merged")
    # A whole-set diagnostic: the merge judges shard 1's value and interval again (it keeps no successes).
    for key in ("status", "value", "n", "interval"):
        assert merged[key] == full[key], key
    assert full["status"] in ("pass", "fail") and full["n"] > 0


def test_fit_readout_separates_the_planted_row_and_sums_to_zero():
    features = torch.tensor([[1.0, 0.0, 0.0], [1.1, 0.1, 0.0], [0.9, 0.0, 0.1], [0.0, 2.0, 0.0]])
    weight, threshold, separable = fit_readout(features)
    scores = features.double() @ weight - threshold
    assert separable and bool((scores[:-1] < 0).all()) and float(scores[-1]) > 0
    assert abs(float(weight.sum())) < 1e-12
    # Adding a constant to a row (log-probabilities of a softmax) changes no score.
    assert torch.allclose(
        (features + torch.tensor([[3.0], [-1.0], [0.5], [7.0]])).double() @ weight, scores + threshold
    )
    assert not fit_readout(torch.ones(4, 3))[2]


def test_binary_readout_gives_two_logits_with_class_one_adversarial():
    readout = BinaryReadout(lambda x: x, torch.tensor([1.0, -1.0]), 0.5)
    logits = readout(torch.tensor([[0.0, 0.0], [2.0, 0.0]]))
    assert logits.tolist() == [[0.0, -0.5], [0.0, 1.5]]


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (30,)], ids=["image", "features"])
def test_planted_directions_have_unit_size_and_depend_only_on_the_sample(norm, shape):
    both = planted_directions(SampleRandom(torch.tensor([3, 7]), (0, 1)), 10, 4, shape, norm)
    alone = planted_directions(SampleRandom(torch.tensor([7]), (0, 1)), 10, 4, shape, norm)
    sizes = both.flatten(2).abs().amax(2) if norm == "linf" else both.flatten(2).norm(dim=2)
    assert torch.allclose(sizes, torch.ones_like(sizes))
    assert torch.equal(both[1], alone[0])


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("samples", "0", "greater than 0"),
        ("colour", "red", "unknown key"),
        ("attack", "apgd-dlr", "needs at least 4 classes"),
        ("queries", "100", "queries"),
    ],
)
def test_policy_errors_point_at_their_line(tmp_path, field, value, expected):
    from policy.helpers import only_problem

    path = tmp_path / "policy.yaml"
    path.write_text(
        f"version: 1\nchecks:\n  - id: s\n    kind: attack_selftest\n    epsilon: 0.1\n    {field}: {value}\n"
    )
    problem = only_problem(path)
    assert problem.position.line == 6 and expected in problem.message, problem.render()


def test_the_defaults_let_a_perfect_attack_pass():
    from gate.policy.specs import AttackSelftestSpec
    from gate.stats import clopper_pearson

    spec = AttackSelftestSpec(id="s", kind="attack_selftest", epsilon=0.1)
    assert (spec.samples, spec.min, spec.adaptive, spec.attack) == (100, 0.95, "auto", "pgd")
    assert clopper_pearson(spec.samples, spec.samples, 0.95).lower >= spec.min
    assert clopper_pearson(72, 72, 0.95).lower >= spec.min > clopper_pearson(71, 71, 0.95).lower


def test_a_features_section_refuses_the_selftest():
    from gate.policy.feature_support import feature_spec_problems
    from gate.policy.specs import AttackSelftestSpec

    spec = AttackSelftestSpec(id="s", kind="attack_selftest", epsilon=0.1)
    ((field, message),) = feature_spec_problems(spec)
    assert field == "kind" and "one input range" in message
