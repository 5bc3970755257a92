from __future__ import annotations

import numpy as np
import pytest
import torch

from gate.attacks.pgd import PGD
from gate.stats import paired_sign_test

from .helpers import (
    PEER_LEVEL,
    accuracy,
    art_classifier,
    assert_at_least_as_strong,
    assert_feasible,
    broken_over_seeds,
    digits_subset,
    robust_flags_of,
    run_recorded,
)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.2), ("l2", 1.0)])
def test_pgd_respects_threat_model(digits_split, digits_cnn, norm, eps):
    x, y = digits_subset(digits_split, 100)
    outcome = PGD(norm=norm, eps=eps, steps=10).perturb(digits_cnn, x, y)
    assert_feasible(outcome, x, norm, eps)


def test_headline_standard_model_breaks_robust_model_holds(digits_split, digits_cnn, robust_digits_cnn):
    """The issue's headline: PGD-20 at eps=0.2 linf ruins a standard model but not a PGD-trained one."""
    x, y = digits_subset(digits_split, 200)
    attack = PGD(norm="linf", eps=0.2, steps=20)
    standard = attack.perturb(digits_cnn, x, y).robust.float().mean().item()
    robust = attack.perturb(robust_digits_cnn, x, y).robust.float().mean().item()
    assert accuracy(digits_cnn, x, y) > 0.9
    assert standard <= 0.05
    assert robust >= 0.35


def test_robust_is_consistent_with_x_adv(digits_split, digits_mlp):
    x, y = digits_subset(digits_split, 100)
    outcome = PGD(norm="linf", eps=0.1, steps=10).perturb(digits_mlp, x, y)
    with torch.no_grad():
        clean_ok = digits_mlp(x).argmax(1) == y
        adv_ok = digits_mlp(outcome.x_adv).argmax(1) == y
    assert torch.equal(outcome.robust, clean_ok & adv_ok)
    # Misclassified points are not attacked: returned unchanged.
    assert torch.equal(outcome.x_adv[~clean_ok], x[~clean_ok])


def test_step_size_default_follows_madry():
    assert PGD(norm="linf", eps=0.2, steps=20).step_size == pytest.approx(0.025)


PEER_CASES = [("linf", 0.2), ("l2", 1.0)]
PEER_SEEDS = range(10)  # per seed, a point's fate moves with the random start; ten runs a side settle it
PEER_POINTS, PEER_STEPS = 297, 20


def gate_pgd(model, x, y, norm, eps, steps=PEER_STEPS):
    return lambda seed: PGD(norm=norm, eps=eps, steps=steps, seed=seed).perturb(model, x, y).robust


@pytest.mark.peers
@pytest.mark.parametrize(("norm", "eps"), PEER_CASES)
def test_pgd_at_least_as_strong_as_torchattacks(digits_split, robust_digits_cnn, norm, eps):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = digits_subset(digits_split, PEER_POINTS)
    model = robust_digits_cnn

    def theirs(seed: int):
        torch.manual_seed(seed)
        peer_class = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
        peer = peer_class(model, eps=eps, alpha=2.5 * eps / PEER_STEPS, steps=PEER_STEPS, random_start=True)
        return robust_flags_of(model, peer(x, y), y)

    ours = broken_over_seeds(gate_pgd(model, x, y, norm, eps), PEER_SEEDS)
    assert_at_least_as_strong(ours, broken_over_seeds(theirs, PEER_SEEDS), "torchattacks")


@pytest.mark.peers
@pytest.mark.parametrize("random_init", [0, 1], ids=["clean-start", "random-start"])  # ART's default is 0
@pytest.mark.parametrize(("norm", "eps"), PEER_CASES)
def test_pgd_at_least_as_strong_as_art(digits_split, robust_digits_cnn, norm, eps, random_init):
    pytest.importorskip("art")
    from art.attacks.evasion import ProjectedGradientDescentPyTorch

    x, y = digits_subset(digits_split, PEER_POINTS)
    model = robust_digits_cnn
    classifier = art_classifier(model)

    def theirs(seed: int):
        np.random.seed(seed)
        torch.manual_seed(seed)
        peer = ProjectedGradientDescentPyTorch(
            classifier, norm=np.inf if norm == "linf" else 2, eps=eps, eps_step=2.5 * eps / PEER_STEPS,
            max_iter=PEER_STEPS, num_random_init=random_init, batch_size=len(x), verbose=False,
        )  # fmt: skip
        return robust_flags_of(model, peer.generate(x.numpy(), y.numpy()), y)

    ours = broken_over_seeds(gate_pgd(model, x, y, norm, eps), PEER_SEEDS)
    assert_at_least_as_strong(ours, broken_over_seeds(theirs, PEER_SEEDS), "ART")


def test_the_peer_comparison_detects_a_weaker_attack(digits_split, robust_digits_cnn):
    """The comparison can fail: PGD-3 against PGD-20 (about 20 of the 297 points) is called weaker far
    beyond the level, while PGD-20 with a random restart against itself under other seeds is not."""
    x, y = digits_subset(digits_split, PEER_POINTS)
    model = robust_digits_cnn
    weak = broken_over_seeds(gate_pgd(model, x, y, "l2", 1.0, steps=3), range(1))
    strong = broken_over_seeds(gate_pgd(model, x, y, "l2", 1.0), range(1))
    with pytest.raises(AssertionError, match="stronger than gate"):
        assert_at_least_as_strong(weak, strong, "PGD-20")
    assert paired_sign_test(weak, strong).p_value < PEER_LEVEL / 100

    def restarted(seed: int):
        return PGD(norm="l2", eps=1.0, steps=PEER_STEPS, restarts=2, seed=seed).perturb(model, x, y).robust

    assert_at_least_as_strong(
        broken_over_seeds(restarted, PEER_SEEDS), broken_over_seeds(restarted, range(100, 110)), "other seeds"
    )


def test_pgd_drops_points_once_they_are_broken(digits_split, digits_cnn):
    # Every 5 steps, points misclassified at some step leave the batch with that adversarial iterate.
    x, y = digits_subset(digits_split, 120)
    batch_sizes, still_robust = run_recorded(PGD(norm="linf", eps=0.1, steps=20), digits_cnn, x, y)
    steps = batch_sizes[1:-1]  # between the clean pass and the verification pass
    assert len(steps) == 20 and steps[0] == steps[4] > steps[5] >= steps[-1] >= still_robust
