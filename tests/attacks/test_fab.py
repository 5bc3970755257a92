from __future__ import annotations

import pytest
import torch

from gate.attacks.fab import FAB, project_onto_hyperplane_in_box
from gate.attacks.threat import perturbation_norm

from .helpers import (
    assert_at_least_as_strong,
    assert_feasible,
    broken_over_seeds,
    digits_subset,
    robust_flags_of,
    run_recorded,
)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_hyperplane_projection_is_feasible_and_minimal(norm):
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(6, 10, generator=generator)
    c = torch.randn(6, generator=generator) * 0.3
    lower, upper = -torch.full((6, 10), 0.5), torch.full((6, 10), 0.5)
    d = project_onto_hyperplane_in_box(w, c, lower, upper, norm)
    assert torch.allclose((w * d).sum(1), c, atol=1e-5)
    assert (d >= lower).all() and (d <= upper).all()
    size = perturbation_norm(torch.zeros_like(d), d, norm)
    for _ in range(50):  # no feasible random perturbation of d on the hyperplane is smaller
        step = torch.randn(6, 10, generator=generator) * 0.05
        step -= (step * w).sum(1, keepdim=True) / (w * w).sum(1, keepdim=True) * w
        other = d + step
        feasible = ((other >= lower) & (other <= upper)).all(1)
        bigger = perturbation_norm(torch.zeros_like(d), other, norm) >= size - 1e-5
        assert (bigger | ~feasible).all()


def test_hyperplane_projection_without_box_matches_closed_form_l2():
    w = torch.tensor([[3.0, 4.0]])
    d = project_onto_hyperplane_in_box(
        w, torch.tensor([5.0]), -torch.ones(1, 2) * 9, torch.ones(1, 2) * 9, "l2"
    )
    assert torch.allclose(d, torch.tensor([[0.6, 0.8]]), atol=1e-5)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_hyperplane_projection_is_exact_and_leaves_zero_weights_alone(norm):
    generator = torch.Generator().manual_seed(1)
    w = torch.randn(50, 1, 8, 8, dtype=torch.float64, generator=generator)
    w[:, :, :2] = 0  # coordinates the hyperplane does not depend on
    x = torch.rand(50, 1, 8, 8, dtype=torch.float64, generator=generator)
    c = torch.randn(50, dtype=torch.float64, generator=generator) * 0.5
    d = project_onto_hyperplane_in_box(w, c, -x, 1 - x, norm)
    torch.testing.assert_close((w * d).flatten(1).sum(1), c, atol=1e-12, rtol=0)
    assert (d[:, :, :2] == 0).all()
    assert ((x + d) >= 0).all() and ((x + d) <= 1).all()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_hyperplane_out_of_reach_gives_the_box_corner_towards_it(norm):
    w = torch.tensor([[1.0, -2.0, 0.0]])
    lower, upper = torch.tensor([[-0.1, -0.2, -0.3]]), torch.tensor([[0.4, 0.5, 0.6]])
    d = project_onto_hyperplane_in_box(w, torch.tensor([100.0]), lower, upper, norm)
    torch.testing.assert_close(d, torch.tensor([[0.4, -0.2, 0.0]]))
    d = project_onto_hyperplane_in_box(w, torch.tensor([-100.0]), lower, upper, norm)
    torch.testing.assert_close(d, torch.tensor([[-0.1, 0.5, 0.0]]))


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.2), ("l2", 1.0)])
def test_fab_t_breaks_standard_model(digits_split, digits_cnn, norm, eps):
    x, y = digits_subset(digits_split, 60)
    outcome = FAB(norm=norm, eps=eps, steps=20, n_target_classes=3).perturb(digits_cnn, x, y)
    assert_feasible(outcome, x, norm, eps)
    assert outcome.robust.float().mean().item() <= 0.1


def test_fab_finds_small_perturbations(digits_split, digits_cnn):
    """FAB minimises the norm: with a generous eps its broken points still sit close to x."""
    x, y = digits_subset(digits_split, 40)
    outcome = FAB(norm="l2", eps=3.0, steps=20, n_target_classes=2).perturb(digits_cnn, x, y)
    sizes = perturbation_norm(x, outcome.x_adv, "l2")[~outcome.robust]
    assert sizes.median().item() < 1.0


@pytest.mark.peers
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.2), ("l2", 1.0)])
def test_fab_t_at_least_as_strong_as_torchattacks(digits_split, robust_digits_cnn, norm, eps):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = digits_subset(digits_split, 100)
    model, seeds = robust_digits_cnn, range(2)

    def ours(seed: int):
        return FAB(norm=norm, eps=eps, steps=20, n_target_classes=9, seed=seed).perturb(model, x, y).robust

    def theirs(seed: int):
        torch.manual_seed(seed)
        peer = torchattacks.FAB(
            model, norm="Linf" if norm == "linf" else "L2", eps=eps, steps=20,
            multi_targeted=True, n_classes=10, seed=seed,
        )  # fmt: skip
        return robust_flags_of(model, peer(x, y), y)

    assert_at_least_as_strong(
        broken_over_seeds(ours, seeds), broken_over_seeds(theirs, seeds), "torchattacks"
    )


def test_fab_drops_points_once_broken_within_eps(digits_split, digits_cnn):
    # A smaller perturbation would not change the verdict, so points broken within eps leave the batch
    # at the next compaction (every 10 steps): the rest of the run works on the survivors only.
    x, y = digits_subset(digits_split, 120)
    attack = FAB(norm="linf", eps=0.1, steps=50, n_target_classes=1)
    batch_sizes, still_robust = run_recorded(attack, digits_cnn, x, y)
    late = batch_sizes[1 + 2 * 20 : -1]  # two forwards a step; after step 20, before verification
    assert max(late) <= still_robust + 5
