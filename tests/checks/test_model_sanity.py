"""Check kind ``model_sanity``: deliberately broken models fire exactly their diagnostic; the digits CNN none."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from gate.checks.model_sanity import (
    RELATIVE_TOLERANCE,
    dead_gradients,
    differs,
    looks_like_log_probabilities,
    looks_like_probabilities,
    per_sample_difference,
)
from gate.model import export_to_onnx

from .conftest import only_check

MASKED = "masked_models:{}"  # factories in tests/checks/masked_models.py, on the DigitsCNN weights

POLICY = """
    version: 1
    name: sanity
    checks:
      - id: sanity
        kind: model_sanity
        {extra}
    """

# Each model is broken in one way that survives model.eval() (gate always evaluates in eval mode).
BAD_MODELS = """
import torch
from torch import nn
from torch.nn import functional as F


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(64, 10)

    def body(self, x):
        return x

    def forward(self, x):
        return self.linear(self.body(x).flatten(1))


class DropoutAlwaysOn(Linear):
    def body(self, x):
        return F.dropout(x, 0.5, training=True)  # dropout kept active at inference


class NoiseInjection(Linear):
    def body(self, x):
        return x + 0.1 * torch.randn_like(x)  # a "randomised defence"


class SoftmaxOutput(Linear):
    def forward(self, x):
        return torch.softmax(super().forward(x), dim=1)


class BatchStatistics(Linear):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm2d(1, track_running_stats=False)  # batch statistics even in eval mode

    def body(self, x):
        return self.norm(x)


class Rounding(Linear):
    def body(self, x):
        return torch.round(x * 4) / 4  # zero gradient almost everywhere


def dropout():
    return DropoutAlwaysOn()


def softmax():
    return SoftmaxOutput()


def batch_statistics():
    return BatchStatistics()


def rounding():
    return Rounding()


def linear():
    return Linear()
"""


def _module(source: str) -> dict[str, object]:
    namespace: dict[str, object] = {}
    exec(compile(source, "bad_models", "exec"), namespace)
    return namespace


@pytest.fixture()
def bad_factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A factory module written for this test and put on sys.path; returns its module name."""
    name = "sanity_bad_models"
    folder = tmp_path / "factories"
    folder.mkdir()
    (folder / f"{name}.py").write_text(BAD_MODELS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


@pytest.fixture()
def bad_onnx(tmp_path: Path):
    """``bad_onnx(class_name) -> Path``: one of BAD_MODELS exported to a self-contained ONNX file."""
    namespace = _module(BAD_MODELS)

    def export(class_name: str) -> Path:
        model = namespace[class_name]()
        assert isinstance(model, nn.Module)
        path = tmp_path / f"{class_name}.onnx"
        export_to_onnx(model, torch.rand(2, 1, 8, 8), path)
        return path

    return export


@pytest.fixture()
def no_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX-only models get no differentiable twin, so only the ONNX Runtime session is diagnosed."""
    from gate.errors import ModelError
    from gate.model import under_test

    def refuse(proto: object) -> None:
        raise ModelError("the twin does not support this graph")

    monkeypatch.setattr(under_test, "build_twin", refuse)


def codes(check) -> list[str]:
    return [finding.code for finding in check.findings]


def sanity(gate_run, model: Path | str, data: Path, extra: str = ""):
    return only_check(gate_run(POLICY.format(extra=extra), model, data))


# --------------------------------------------------------------------- pure functions
def test_probability_rows_are_recognised() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]])
    assert not looks_like_probabilities(logits).any()
    assert looks_like_probabilities(torch.softmax(logits, 1)).all()
    assert not looks_like_log_probabilities(logits).any()
    assert looks_like_log_probabilities(torch.log_softmax(logits, 1)).all()
    assert not looks_like_log_probabilities(torch.softmax(logits, 1)).any()


def test_difference_treats_nan_as_infinitely_different() -> None:
    first = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    second = torch.tensor([[1.0, 2.5], [float("nan"), 0.0]])
    assert per_sample_difference(first, second).tolist() == [0.5, float("inf")]


def test_dead_gradients_per_sample() -> None:
    torch.manual_seed(0)
    smooth = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(5, 1, 2, 2), torch.zeros(5, dtype=torch.long)
    assert not dead_gradients(smooth, x, y).any()
    assert dead_gradients(nn.Sequential(_Round(), smooth), x, y).all()


def test_dead_gradients_include_a_disconnected_graph() -> None:
    """It used to raise from torch.autograd.grad ("appears to not have been used in the graph")."""
    torch.manual_seed(0)
    smooth = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(5, 1, 2, 2), torch.zeros(5, dtype=torch.long)
    assert dead_gradients(nn.Sequential(_Detach(), smooth), x, y).all()


def test_differences_are_judged_relative_to_each_sample_s_scale() -> None:
    small = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    large = small * 1e5
    rounding = RELATIVE_TOLERANCE / 2 * 2e5  # half the tolerance of the first large row
    assert not differs(large, large + torch.tensor([[rounding, 0.0], [0.0, 0.0]]), 1e-3).any()
    assert differs(small, small + torch.tensor([[2e-3, 0.0], [0.0, 0.0]]), 1e-3).tolist() == [True, False]
    assert differs(large, large * torch.tensor([[1.01], [1.0]]), 1e-3).tolist() == [True, False]
    nan = large.clone()
    nan[1, 1] = float("nan")
    assert differs(large, nan, 1e-3).tolist() == [False, True]


class _Detach(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach()


class _Round(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)


# --------------------------------------------------------------------- named pass fixtures
def test_digits_cnn_passes_every_diagnostic(gate_run, digits_cnn_onnx, digits_npz) -> None:
    check = sanity(gate_run, digits_cnn_onnx, digits_npz)
    assert check.status == "pass", check.message
    assert check.value == 0 and check.findings == [] and check.n == 128
    assert check.details["zero_or_nan_gradient_fraction"] <= 0.05
    assert set(check.details["repeat_max_abs_diff"]) == {"onnx", "gradient model"}


def test_healthy_factory_passes(gate_run, bad_factories, digits_npz) -> None:
    check = sanity(gate_run, f"{bad_factories}:linear", digits_npz, "diagnostic_samples: 32")
    assert check.status == "pass", check.message
    assert check.n == 32


# --------------------------------------------------------------------- named fail fixtures
def test_dropout_kept_active_in_the_gradient_model(gate_run, bad_factories, digits_npz) -> None:
    check = sanity(gate_run, f"{bad_factories}:dropout", digits_npz)
    assert check.status == "fail"
    assert codes(check) == ["nondeterministic_outputs"]
    # The PyTorch module the attacks differentiate is random (the export may keep the dropout too).
    assert "gradient model" in check.findings[0].data["producers"]


def test_noise_injection_in_the_onnx_session(gate_run, bad_onnx, digits_npz) -> None:
    check = sanity(gate_run, bad_onnx("NoiseInjection"), digits_npz)
    assert check.status == "fail"
    assert "nondeterministic_outputs" in codes(check)
    assert "onnx" in check.findings[0].data["producers"]


@pytest.mark.parametrize(
    ("class_name", "kind"),
    [("SoftmaxOutput", "probabilities"), ("LogSoftmaxOutput", "log_probabilities")],
)
def test_probability_outputs(gate_run, tmp_path, digits_npz, class_name, kind) -> None:
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    squash = nn.Softmax(dim=1) if kind == "probabilities" else nn.LogSoftmax(dim=1)
    path = tmp_path / f"{class_name}.onnx"
    export_to_onnx(nn.Sequential(linear, squash), torch.rand(2, 1, 8, 8), path)
    check = sanity(gate_run, path, digits_npz)
    assert codes(check) == ["probability_outputs"], check.message
    assert check.findings[0].data["kind"] == kind and check.findings[0].data["share"] == 1.0


def test_batch_statistics(gate_run, bad_factories, digits_npz) -> None:
    check = sanity(gate_run, f"{bad_factories}:batch_statistics", digits_npz)
    assert codes(check) == ["batch_size_dependence"], check.message
    assert set(check.findings[0].data["samples"]) == {"onnx", "gradient model"}


def test_batch_statistics_in_an_onnx_only_model(gate_run, bad_onnx, digits_npz) -> None:
    check = sanity(gate_run, bad_onnx("BatchStatistics"), digits_npz)
    assert codes(check) == ["batch_size_dependence"], check.message
    assert set(check.findings[0].data["samples"]) == {"onnx", "gradient model"}  # the session and its twin


def test_batch_statistics_in_the_onnx_session(gate_run, bad_onnx, digits_npz, no_twin) -> None:
    check = sanity(gate_run, bad_onnx("BatchStatistics"), digits_npz)
    assert codes(check) == ["batch_size_dependence"], check.message
    assert set(check.findings[0].data["samples"]) == {"onnx"}


def test_rounding_kills_gradients(gate_run, bad_factories, digits_npz) -> None:
    check = sanity(gate_run, f"{bad_factories}:rounding", digits_npz)
    assert codes(check) == ["zero_or_nan_gradients"], check.message
    assert check.findings[0].data["fraction"] == 1.0


def test_thresholds_and_tolerances_are_the_policy_s(gate_run, bad_factories, digits_npz) -> None:
    lenient = "max: 1\n        tolerance: 1.0"  # the second line indented like the first in POLICY
    check = sanity(gate_run, f"{bad_factories}:rounding", digits_npz, lenient)
    assert check.status == "pass" and check.findings == []
    one_allowed = sanity(gate_run, f"{bad_factories}:softmax", digits_npz, "max: 1")
    assert one_allowed.status == "pass" and codes(one_allowed) == ["probability_outputs"]


def test_without_a_gradient_model_the_session_diagnostics_still_run(
    gate_run, digits_cnn_onnx, digits_npz, no_twin
) -> None:
    check = sanity(gate_run, digits_cnn_onnx, digits_npz)
    assert check.status == "warn"  # a skipped diagnostic is not a pass (issue 22)
    assert "gradient diagnostics skipped" in check.message
    assert "incomplete (the gradient diagnostics did not run" in check.message
    assert set(check.details["repeat_max_abs_diff"]) == {"onnx"}


def test_sharded_runs_diagnose_once_in_shard_one(gate_run, bad_factories, digits_npz) -> None:
    whole = sanity(gate_run, f"{bad_factories}:softmax", digits_npz)
    policy = POLICY.format(extra="")
    first = only_check(gate_run(policy, f"{bad_factories}:softmax", digits_npz, shard=(1, 3)))
    later = only_check(gate_run(policy, f"{bad_factories}:softmax", digits_npz, shard=(2, 3)))
    assert (first.n, codes(first)) == (whole.n, codes(whole)) == (128, ["probability_outputs"])
    assert later.details == {"deferred_to_shard": 1} and later.findings == []


def test_a_trained_sigmoid_model_outputs_bounded_probabilities(
    gate_run, sigmoid_digits_cnn_onnx, digits_npz
) -> None:
    """Per-class sigmoids do not sum to 1, so the softmax test missed them and the check found nothing."""
    check = sanity(gate_run, sigmoid_digits_cnn_onnx, digits_npz)
    assert check.status == "fail" and codes(check) == ["probability_outputs"], check.message
    assert check.findings[0].data == {"kind": "bounded", "share": 1.0, "squashing": "sigmoid"}
    assert "use the logits before the model's final sigmoid" in check.findings[0].message


def test_bounded_outputs_without_a_squashing_to_undo(
    gate_run, hardsigmoid_digits_cnn_onnx, digits_npz
) -> None:
    check = sanity(gate_run, hardsigmoid_digits_cnn_onnx, digits_npz)
    assert "probability_outputs" in codes(check), check.message
    finding = next(f for f in check.findings if f.code == "probability_outputs")
    assert finding.data["kind"] == "bounded" and finding.data["squashing"] is None
    assert "white-box adversarial checks end as error" in finding.message


# --------------------------------------------------------------------- issue 21
def test_a_detached_input_is_a_finding_not_an_error(factory_run, masked_weights, digits_npz) -> None:
    check = only_check(
        factory_run(POLICY.format(extra=""), MASKED.format("detached_cnn"), masked_weights, digits_npz)
    )
    assert check.status == "fail", check.message
    assert codes(check) == ["disconnected_gradients"] and check.value == 1
    assert "BPDA" in check.findings[0].message and "detach()" in check.findings[0].message
    assert check.details["gradients_disconnected"] is True


def test_large_logits_are_not_batch_size_dependent(factory_run, masked_weights, digits_npz) -> None:
    """Logits near 1e5 round differently alone and in a batch, by far more than an absolute 1e-3."""
    check = only_check(
        factory_run(POLICY.format(extra=""), MASKED.format("scaled_logits_cnn"), masked_weights, digits_npz)
    )
    # Only the gradients are a finding: a cross-entropy on logits near 1e5 saturates to exactly zero.
    assert codes(check) == ["zero_or_nan_gradients"], check.message
    assert max(check.details["alone_vs_batch_max_abs_diff"].values()) > 1e-3  # the old false positive
    assert max(check.details["alone_vs_batch_max_rel_diff"].values()) < RELATIVE_TOLERANCE


@pytest.mark.parametrize(
    ("factory", "code"),
    [
        ("batch_statistics_cnn", "batch_size_dependence"),
        ("noisy_scaled_logits_cnn", "nondeterministic_outputs"),
    ],
)
def test_real_differences_in_large_logits_are_still_caught(
    factory_run, masked_weights, digits_npz, factory, code
) -> None:
    check = only_check(
        factory_run(POLICY.format(extra=""), MASKED.format(factory), masked_weights, digits_npz)
    )
    assert code in codes(check), check.message
    assert {"onnx", "gradient model"} <= set(
        next(f for f in check.findings if f.code == code).data["samples"]
    )
