from __future__ import annotations

import pytest
import torch

from gate.attacks.threat import ThreatModel, perturbation_norm
from gate.randomness.streams import SampleRandom


def test_perturbation_norm_per_sample():
    x = torch.zeros(2, 1, 2, 2)
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] = 0.3
    x_adv[1, 0] = torch.tensor([[0.3, 0.4], [0.0, 0.0]])
    assert torch.allclose(perturbation_norm(x, x_adv, "linf"), torch.tensor([0.3, 0.4]))
    assert torch.allclose(perturbation_norm(x, x_adv, "l2"), torch.tensor([0.3, 0.5]))
    with pytest.raises(ValueError):
        perturbation_norm(x, x_adv, "l1")  # type: ignore[arg-type]


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.5)])
def test_projection_lands_in_ball_and_bounds(norm, eps):
    threat = ThreatModel(norm=norm, eps=eps, bounds=(0.0, 1.0))
    x = torch.rand(16, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    far = x + 3 * torch.randn(16, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    projected = threat.project(far, x)
    assert perturbation_norm(x, projected, norm).max() <= eps * (1 + 1e-6)
    assert projected.min() >= 0 and projected.max() <= 1
    inside = threat.project(x + 0.01 * eps * far.sign() / 25, x)
    assert torch.allclose(threat.project(inside, x), inside)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.5)])
def test_projector_with_precomputed_limits_equals_project(norm, eps):
    threat = ThreatModel(norm=norm, eps=eps, bounds=(0.0, 1.0))
    x = torch.rand(16, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    far = x + 3 * torch.randn(16, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(threat.projector(x)(far), threat.project(far, x), rtol=0, atol=0)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 0.5)])
def test_random_start_is_feasible(norm, eps):
    threat = ThreatModel(norm=norm, eps=eps)
    x = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    start = threat.random_start(x, SampleRandom(torch.arange(8), (0,)), tag=0)
    assert perturbation_norm(x, start, norm).max() <= eps * (1 + 1e-6)
    assert not torch.equal(start, x)
