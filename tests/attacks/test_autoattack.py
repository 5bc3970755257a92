from __future__ import annotations

import pytest
import torch

from gate.attacks.autoattack import NOT_BROKEN, AutoAttack
from gate.attacks.pgd import PGD

from .helpers import (
    assert_at_least_as_strong,
    assert_feasible,
    broken_over_seeds,
    digits_subset,
    robust_flags_of,
)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.2), ("l2", 1.0)])
def test_autoattack_reports_worst_case_and_culprit(digits_split, robust_digits_cnn, norm, eps):
    x, y = digits_subset(digits_split, 80)
    attack = AutoAttack(norm=norm, eps=eps, steps=10, n_target_classes=3, square_queries=100)
    outcome = attack.perturb(robust_digits_cnn, x, y)
    assert_feasible(outcome, x, norm, eps)
    assert outcome.broken_by is not None
    assert torch.equal(outcome.robust, outcome.broken_by == NOT_BROKEN)
    with torch.no_grad():
        clean_wrong = robust_digits_cnn(x).argmax(1) != y
    assert torch.equal(outcome.broken_by == 0, clean_wrong)
    names = outcome.broken_by_names()
    assert set(names) <= {None, "clean", "apgd-ce", "apgd-t", "fab-t", "square"}
    assert "apgd-ce" in names
    pgd = PGD(norm=norm, eps=eps, steps=10).perturb(robust_digits_cnn, x, y)
    assert outcome.robust.sum() <= pgd.robust.sum() + 1


@pytest.mark.slow
@pytest.mark.peers
def test_autoattack_at_least_as_strong_as_torchattacks(digits_split, robust_digits_cnn):
    """The standard protocol at full budget on both sides (100 steps, 5000 queries): minutes on a CPU."""
    torchattacks = pytest.importorskip("torchattacks")
    x, y = digits_subset(digits_split, 100)
    ours = AutoAttack(norm="linf", eps=0.2).perturb(robust_digits_cnn, x, y).robust
    torch.manual_seed(0)
    peer = torchattacks.AutoAttack(robust_digits_cnn, norm="Linf", eps=0.2, n_classes=10, seed=0)
    theirs = robust_flags_of(robust_digits_cnn, peer(x, y), y)
    assert_at_least_as_strong(
        broken_over_seeds(lambda _: ours, range(1)),
        broken_over_seeds(lambda _: theirs, range(1)),
        "torchattacks",
    )
