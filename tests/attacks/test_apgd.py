from __future__ import annotations

import numpy as np
import pytest
import torch

from gate.attacks.apgd import APGD, APGDCE, APGDT, checkpoints
from gate.attacks.pgd import PGD

from .helpers import (
    art_classifier,
    assert_at_least_as_strong,
    assert_feasible,
    broken_over_seeds,
    digits_subset,
    robust_flags_of,
    run_recorded,
)


def test_checkpoints_follow_the_paper():
    # p = 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (Croce & Hein 2020, sec. 3.2)
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1) == [1]
    assert all(0 < mark <= 7 for mark in checkpoints(7))


@pytest.mark.parametrize("attack_class", [APGDCE, APGDT])
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.2), ("l2", 1.0)])
def test_apgd_respects_threat_model(digits_split, digits_cnn, attack_class, norm, eps):
    x, y = digits_subset(digits_split, 60)
    outcome = attack_class(norm=norm, eps=eps, steps=10).perturb(digits_cnn, x, y)
    assert_feasible(outcome, x, norm, eps)


def test_apgd_t_caps_targets_at_classes_minus_one():
    attack = APGDT(norm="linf", eps=0.1, n_target_classes=50)
    assert list(attack._target_ranks(10)) == list(range(2, 11))
    assert list(APGDT(norm="linf", eps=0.1)._target_ranks(5)) == [2, 3, 4, 5]


def test_apgd_at_least_as_strong_as_pgd_on_robust_model(digits_split, robust_digits_cnn):
    x, y = digits_subset(digits_split, 200)
    seeds = range(4)

    def apgd(seed: int):
        return APGDCE(norm="l2", eps=1.0, steps=20, seed=seed).perturb(robust_digits_cnn, x, y).robust

    def pgd(seed: int):
        return PGD(norm="l2", eps=1.0, steps=20, seed=seed).perturb(robust_digits_cnn, x, y).robust

    assert_at_least_as_strong(broken_over_seeds(apgd, seeds), broken_over_seeds(pgd, seeds), "gate's PGD")


def test_untargeted_dlr_runs(digits_split, digits_mlp):
    x, y = digits_subset(digits_split, 50)
    outcome = APGD(norm="linf", eps=0.1, steps=5, loss="dlr").perturb(digits_mlp, x, y)
    assert_feasible(outcome, x, "linf", 0.1)


PEER_CASES = [("linf", 0.2), ("l2", 1.0)]
# Both sides get the same restarts (a point counts as robust only if it survives all) and six seeds;
# the comparison is paired per point (helpers.assert_at_least_as_strong).
PEER_SEEDS = range(6)
PEER_POINTS, PEER_STEPS, RESTARTS = 297, 20, 4


def _ours(model, x, y, norm, eps):
    return lambda seed: (
        APGDCE(norm=norm, eps=eps, steps=PEER_STEPS, restarts=RESTARTS, seed=seed).perturb(model, x, y).robust
    )


@pytest.mark.peers
@pytest.mark.parametrize(("norm", "eps"), PEER_CASES)
def test_apgd_at_least_as_strong_as_torchattacks(digits_split, robust_digits_cnn, norm, eps):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = digits_subset(digits_split, PEER_POINTS)
    model = robust_digits_cnn

    def theirs(seed: int):
        torch.manual_seed(seed)
        peer_norm = "Linf" if norm == "linf" else "L2"
        peer = torchattacks.APGD(
            model, norm=peer_norm, eps=eps, steps=PEER_STEPS, n_restarts=RESTARTS, loss="ce", seed=seed
        )
        return robust_flags_of(model, peer(x, y), y)

    ours = broken_over_seeds(_ours(model, x, y, norm, eps), PEER_SEEDS)
    assert_at_least_as_strong(ours, broken_over_seeds(theirs, PEER_SEEDS), "torchattacks")


@pytest.mark.peers
@pytest.mark.parametrize(("norm", "eps"), PEER_CASES)
def test_apgd_at_least_as_strong_as_art(digits_split, robust_digits_cnn, norm, eps):
    pytest.importorskip("art")
    from art.attacks.evasion import AutoProjectedGradientDescent

    x, y = digits_subset(digits_split, PEER_POINTS)
    model = robust_digits_cnn
    classifier = art_classifier(model)

    def theirs(seed: int):
        np.random.seed(seed)
        torch.manual_seed(seed)
        peer = AutoProjectedGradientDescent(
            classifier, norm=np.inf if norm == "linf" else 2, eps=eps, eps_step=2 * eps, max_iter=PEER_STEPS,
            nb_random_init=RESTARTS, batch_size=len(x), loss_type="cross_entropy", verbose=False,
        )  # fmt: skip
        return robust_flags_of(model, peer.generate(x.numpy(), y.numpy()), y)

    ours = broken_over_seeds(_ours(model, x, y, norm, eps), PEER_SEEDS)
    assert_at_least_as_strong(ours, broken_over_seeds(theirs, PEER_SEEDS), "ART")


def test_apgd_drops_points_once_they_are_broken(digits_split, digits_cnn):
    # At eps=0.1 about half the points break before the first checkpoint (step 11 of 50): the later
    # steps must run only on the others.
    x, y = digits_subset(digits_split, 120)
    batch_sizes, still_robust = run_recorded(APGDCE(norm="linf", eps=0.1, steps=50), digits_cnn, x, y)
    late = batch_sizes[20:-1]  # after the first checkpoint, before the final verification
    assert max(late) <= still_robust + 5
    assert sum(batch_sizes) < 0.8 * 120 * 52
