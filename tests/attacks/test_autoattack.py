from __future__ import annotations

import pytest
import torch

from gate.attacks.autoattack import NOT_BROKEN, AutoAttack
from gate.attacks.pgd import PGD

from .helpers import (
    BatchRecorder,
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


def _hadamard_classifier(classes: int = 10, shape: tuple[int, int, int] = (4, 8, 8)) -> torch.nn.Module:
    """A linear classifier with orthogonal +-1 class vectors (rows of a Hadamard matrix), centred at 0.5:
    a point ``0.5 + a * w_y`` has margin ``a * d`` to every other class, and an L-inf step of ``eps``
    lowers it by at most ``eps * d``, so whether a point can be broken is known exactly."""
    size = shape[0] * shape[1] * shape[2]
    hadamard = torch.ones(1, 1)
    while hadamard.shape[0] < size:
        hadamard = torch.cat([torch.cat([hadamard, hadamard], 1), torch.cat([hadamard, -hadamard], 1)], 0)
    layer = torch.nn.Linear(size, classes)
    with torch.no_grad():
        layer.weight.copy_(hadamard[1 : classes + 1])
        layer.bias.copy_(-0.5 * layer.weight.sum(dim=1))
    return torch.nn.Sequential(torch.nn.Flatten(), layer).eval()


def test_later_stages_cost_in_proportion_to_the_points_still_robust():
    # 37 points that any first step breaks (margin 0.02 * 256 = 5 against an eps * 256 = 13 reach) and 3
    # that nothing can (margin 102): APGD-CE must drop the 37 within a few steps, not at its first
    # checkpoint, and every later stage must work on the 3 alone, at most its budget per point.
    model = _hadamard_classifier()
    weights = model[1].weight.detach()
    n, survivors, steps, targets, queries = 40, 3, 50, 3, 300
    y = torch.arange(n) % 10
    scale = torch.where(torch.arange(n) < survivors, 0.4, 0.02)
    x = (0.5 + scale[:, None] * weights[y]).reshape(n, 4, 8, 8)
    attack = AutoAttack(norm="linf", eps=0.05, steps=steps, n_target_classes=targets, square_queries=queries)
    recorder = BatchRecorder(model)
    rows, points = [], []
    for stage in attack.stages:

        def counted(m, xs, ys, *, index=None, _perturb=stage.perturb):
            before = sum(recorder.batch_sizes)
            outcome = _perturb(m, xs, ys, index=index)
            rows.append(sum(recorder.batch_sizes) - before)
            points.append(len(xs))
            return outcome

        stage.perturb = counted
    outcome = attack.perturb(recorder, x, y)
    assert outcome.robust.tolist() == [True] * survivors + [False] * (n - survivors)
    assert outcome.broken_by_names()[survivors:] == ["apgd-ce"] * (n - survivors)
    assert points == [n, survivors, survivors, survivors]
    # Per broken point: clean pass, start, <= 5 steps, verification; the survivors take the whole run.
    assert rows[0] <= (n - survivors) * (1 + 1 + 5 + 1) + survivors * (steps + 3)
    # Each: a clean pass, then per target a start, the steps and a verification (FAB: no start, and a
    # forward+backward and a forward to judge each step); Square: its queries and a verification.
    apgd_t = survivors * (1 + targets * (1 + steps + 1))
    fab_t = survivors * (1 + targets * (2 * steps + 1))
    assert rows[1:] == [apgd_t, fab_t, survivors * (1 + queries + 1)]


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
