"""corruption: accuracy under a corruption falls with its level and is reproducible."""

from __future__ import annotations

import pytest

from checks.conftest import only_check

POLICY = """
    version: 1
    name: corruption
    checks:
      - id: corrupted
        kind: corruption
        corruption: {name}
        level: {level}
        min: 0.0
    """


@pytest.mark.parametrize("name", ["gaussian_noise", "impulse_noise", "contrast"])
def test_accuracy_falls_with_level(gate_run, digits_cnn_onnx, digits_npz, name):
    mild = only_check(gate_run(POLICY.format(name=name, level=1), digits_cnn_onnx, digits_npz))
    severe = only_check(gate_run(POLICY.format(name=name, level=5), digits_cnn_onnx, digits_npz))
    assert mild.value >= severe.value
    assert severe.value < mild.details["clean_accuracy"]
    assert severe.artifacts == ["artifacts/corrupted/examples.png"]


def test_same_seed_same_accuracy(gate_run, digits_cnn_onnx, digits_npz):
    first = only_check(gate_run(POLICY.format(name="shot_noise", level=4), digits_cnn_onnx, digits_npz))
    second = only_check(gate_run(POLICY.format(name="shot_noise", level=4), digits_cnn_onnx, digits_npz))
    assert first.value == second.value and first.successes == second.successes


def test_policy_names_exactly_the_implemented_corruptions():
    import typing

    from gate.corruptions import CORRUPTIONS
    from gate.feature_corruptions import FEATURE_CORRUPTIONS
    from gate.policy.specs import CorruptionName

    assert set(typing.get_args(CorruptionName)) == set(CORRUPTIONS) | set(FEATURE_CORRUPTIONS)
    assert not set(CORRUPTIONS) & set(FEATURE_CORRUPTIONS)
