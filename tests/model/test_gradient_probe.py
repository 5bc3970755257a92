"""probe_input_gradients: zero, non-finite and missing input gradients are told apart, per sample."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gate.model.gradient_probe import GradientProbe, probe_input_gradients


class _Lambda(nn.Module):
    def __init__(self, function) -> None:
        super().__init__()
        self.function = function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)


@pytest.fixture()
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])


def _linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


def test_a_smooth_model_has_live_gradients(batch) -> None:
    probe = probe_input_gradients(_linear(), *batch)
    assert isinstance(probe, GradientProbe)
    assert not probe.disconnected
    assert probe.dead.tolist() == [False] * 5 and not probe.nonfinite.any()


def test_rounding_gives_zero_gradients_on_a_connected_graph(batch) -> None:
    probe = probe_input_gradients(nn.Sequential(_Lambda(torch.round), _linear()), *batch)
    assert not probe.disconnected
    assert probe.dead.all() and not probe.nonfinite.any()


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda x: (torch.round(x * 8) / 8).detach(), id="detach"),
        pytest.param(lambda x: (x * 8).long().float() / 8, id="integer cast"),
        pytest.param(lambda x: torch.from_numpy(x.detach().numpy().copy()), id="numpy"),
    ],
)
def test_a_cut_graph_is_disconnected_not_an_error(batch, cut) -> None:
    """torch.autograd.grad raises "appears to not have been used in the graph" on these."""
    probe = probe_input_gradients(nn.Sequential(_Lambda(cut), _linear()), *batch)
    assert probe.disconnected
    assert probe.dead.all() and probe.dead.shape == (5,) and not probe.nonfinite.any()


def test_a_cut_graph_without_trainable_parameters_is_disconnected(batch) -> None:
    """Frozen weights behind a detach: the logits have no grad_fn at all."""
    model = nn.Sequential(_Lambda(torch.Tensor.detach), _linear()).requires_grad_(False)
    assert probe_input_gradients(model, *batch).disconnected


def test_non_finite_gradients_are_dead_and_named(batch) -> None:
    x, y = batch
    linear = _linear()

    def nan_on_first(inputs: torch.Tensor) -> torch.Tensor:
        # sqrt at 0 has an infinite derivative; times zero it is NaN. Elsewhere sqrt is taken at 1.
        offset = torch.ones(len(inputs), 1, 1, 1)
        offset[0] = 0
        return inputs + torch.sqrt(inputs * 0 + offset) - offset

    probe = probe_input_gradients(nn.Sequential(_Lambda(nan_on_first), linear), x, y)
    assert probe.nonfinite.tolist() == [True, False, False, False, False]
    assert probe.dead.tolist() == [True, False, False, False, False]


def test_the_input_and_the_parameters_are_left_alone(batch) -> None:
    x, y = batch
    model = _linear()
    before = x.clone()
    probe_input_gradients(model, x, y)
    assert torch.equal(x, before) and x.grad is None and not x.requires_grad
    assert all(parameter.grad is None for parameter in model.parameters())
