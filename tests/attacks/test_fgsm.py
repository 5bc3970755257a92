from __future__ import annotations

import pytest

from gate.attacks.fgsm import FGSM
from gate.attacks.threat import perturbation_norm

from .helpers import assert_feasible, digits_subset


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.2), ("l2", 1.0)])
def test_fgsm_takes_one_full_step(digits_split, digits_cnn, norm, eps):
    x, y = digits_subset(digits_split, 100)
    outcome = FGSM(norm=norm, eps=eps).perturb(digits_cnn, x, y)
    assert_feasible(outcome, x, norm, eps)
    assert outcome.robust.float().mean().item() < 0.6
    if norm == "linf":  # a sign step hits the eps-box on every pixel not stopped by the bounds
        assert perturbation_norm(x, outcome.x_adv, norm).max().item() == pytest.approx(eps)


def test_fgsm_refuses_steps_or_restarts():
    with pytest.raises(ValueError, match="one step"):
        FGSM(norm="linf", eps=0.1, steps=5)
