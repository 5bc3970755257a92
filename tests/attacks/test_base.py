"""The contract every registered attack keeps, checked on each of them for both norms."""

from __future__ import annotations

import pytest
import torch

from gate.attacks import fab, pgd, square
from gate.attacks.base import AttackOutcome
from gate.attacks.catalogue import CATALOGUE
from gate.attacks.registry import ATTACKS, make_attack

from .helpers import assert_feasible, digits_subset, host_syncs

EPS = {"linf": 0.15, "l2": 0.8}
FAST_OPTIONS = {
    "fgsm": {},
    "pgd": {"steps": 5, "restarts": 2},  # the second restart is the one that starts at random
    "apgd-ce": {"steps": 5},
    "apgd-dlr": {"steps": 3, "n_target_classes": 2},
    "fab": {"steps": 4, "n_target_classes": 2},
    "square": {"steps": 40},
    "autoattack": {"steps": 3, "n_target_classes": 2, "square_queries": 30},
}


# The norm-ball attacks on images and features in the input range; the feature-space attacks have their
# own contract (tests/attacks/test_constrained.py).
BALL_ATTACKS = {name: cls for name, cls in ATTACKS.items() if not CATALOGUE[name].feature_space}


def build(name: str, norm: str, **extra):
    return make_attack(name, norm=norm, eps=EPS[norm], **FAST_OPTIONS[name], **extra)


def test_fast_options_cover_the_registry():
    assert set(FAST_OPTIONS) == set(BALL_ATTACKS)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("name", sorted(BALL_ATTACKS))
def test_every_attack_keeps_the_contract(digits_split, digits_cnn, name, norm):
    x, y = digits_subset(digits_split, 40)
    before = {key: value.clone() for key, value in digits_cnn.state_dict().items()}
    grads_before = [None if p.grad is None else p.grad.clone() for p in digits_cnn.parameters()]
    outcome = build(name, norm).perturb(digits_cnn, x, y)
    assert isinstance(outcome, AttackOutcome)
    assert_feasible(outcome, x, norm, EPS[norm])
    with torch.no_grad():
        clean_ok = digits_cnn(x).argmax(1) == y
        adv_ok = digits_cnn(outcome.x_adv).argmax(1) == y
    assert torch.equal(outcome.robust, clean_ok & adv_ok)
    assert torch.equal(outcome.x_adv[~clean_ok], x[~clean_ok])  # misclassified points are not attacked
    assert not digits_cnn.training
    assert all(torch.equal(before[key], value) for key, value in digits_cnn.state_dict().items())
    for grad_before, parameter in zip(grads_before, digits_cnn.parameters(), strict=True):
        assert (parameter.grad is None) if grad_before is None else torch.equal(parameter.grad, grad_before)
    if outcome.queries is not None:
        assert outcome.queries.dtype == torch.int64 and outcome.queries.shape == y.shape


@pytest.mark.parametrize("name", sorted(BALL_ATTACKS))
def test_same_seed_same_output_and_index_makes_batches_irrelevant(digits_split, digits_cnn, name):
    x, y = digits_subset(digits_split, 30)
    index = torch.arange(100, 130)
    attack = build(name, "linf", seed=3)
    first = attack.perturb(digits_cnn, x, y, index=index)
    again = build(name, "linf", seed=3).perturb(digits_cnn, x, y, index=index)
    assert torch.equal(first.x_adv, again.x_adv) and torch.equal(first.robust, again.robust)
    # A shard holding every other sample, in reverse order, gets the same per-sample result.
    shard = torch.arange(28, -1, -2)
    part = attack.perturb(digits_cnn, x[shard], y[shard], index=index[shard])
    assert torch.allclose(part.x_adv, first.x_adv[shard], atol=1e-5)
    assert torch.equal(part.robust, first.robust[shard])


def test_different_seeds_differ(digits_split, robust_digits_cnn):
    x, y = digits_subset(digits_split, 20)
    a = build("pgd", "linf", seed=0).perturb(robust_digits_cnn, x, y).x_adv
    b = build("pgd", "linf", seed=1).perturb(robust_digits_cnn, x, y).x_adv
    assert not torch.equal(a, b)


def test_pgd_starts_clean_then_at_random(digits_split, robust_digits_cnn):
    x, y = digits_subset(digits_split, 40)
    one_run = [
        pgd.PGD(norm="linf", eps=EPS["linf"], steps=5, seed=seed).perturb(robust_digits_cnn, x, y)
        for seed in (0, 1)
    ]
    assert torch.equal(one_run[0].x_adv, one_run[1].x_adv)  # one run from the clean point: no randomness
    clean = pgd.PGD(norm="linf", eps=EPS["linf"], steps=5, random_start=False)
    assert torch.equal(clean.perturb(robust_digits_cnn, x, y).x_adv, one_run[0].x_adv)


def test_input_is_left_untouched(digits_split, digits_mlp):
    x, y = digits_subset(digits_split, 20)
    x_copy = x.clone()
    build("apgd-ce", "l2").perturb(digits_mlp, x, y)
    assert torch.equal(x, x_copy) and not x.requires_grad


@pytest.mark.parametrize(
    "options",
    [
        {"norm": "l3", "eps": 0.1},
        {"norm": "linf", "eps": -0.1},
        {"norm": "linf", "eps": 0.1, "bounds": (1.0, 0.0)},
        {"norm": "linf", "eps": 0.1, "steps": 0},
        {"norm": "linf", "eps": 0.1, "restarts": 0},
    ],
)
def test_invalid_options_are_rejected(options):
    with pytest.raises(ValueError):
        make_attack("pgd", **options)


@pytest.mark.parametrize("name", ["square", "apgd-ce", "autoattack"])
def test_untargeted_only_attacks_refuse_targeted(name):
    with pytest.raises(TypeError, match="targeted"):
        make_attack(name, norm="linf", eps=0.1, targeted=True)


def test_index_must_match_batch(digits_split, digits_mlp):
    x, y = digits_subset(digits_split, 10)
    with pytest.raises(ValueError, match="index"):
        build("pgd", "linf").perturb(digits_mlp, x, y, index=torch.arange(3))


def test_all_broken_batch_returns_early(digits_split, digits_mlp):
    x, y = digits_subset(digits_split, 10)
    wrong = (y + 1) % 10
    outcome = build("pgd", "linf").perturb(digits_mlp, x, wrong)
    assert not outcome.robust.any()


def _compactions(steps: int, every: int) -> int:
    return (steps - 1) // every


SYNC_CASES = [
    ("pgd", {"steps": 40}, 1 + _compactions(40, pgd._COMPACT_EVERY)),
    ("fab", {"steps": 30, "n_target_classes": 2}, 2 * (1 + _compactions(30, fab._COMPACT_EVERY))),
    ("square", {"steps": 120}, 1 + _compactions(120, square._COMPACT_EVERY)),
    ("fgsm", {}, 1),
]


@pytest.mark.parametrize(("name", "options", "runs_and_compactions"), SYNC_CASES)
def test_host_waits_once_per_run_and_compaction_not_per_step(digits_split, digits_cnn, name, options,
                                                             runs_and_compactions):  # fmt: skip
    # On a GPU every sync stalls the launch queue; the loop must run on without reading device values,
    # and narrowing the batch costs one sync however many tensors it narrows.
    x, y = digits_subset(digits_split, 100)
    attack = make_attack(name, norm="linf", eps=0.15, **options)
    assert host_syncs(attack, digits_cnn, x, y) <= runs_and_compactions


def test_apgd_waits_only_when_it_drops_points(digits_split, digits_cnn):
    # At its checkpoints and every few steps between them (so a broken point leaves within a few
    # steps), never per step.
    x, y = digits_subset(digits_split, 100)
    attack = make_attack("apgd-ce", norm="linf", eps=0.15, steps=40)
    assert host_syncs(attack, digits_cnn, x, y) <= 1 + len(attack.compactions) < 40 // 2


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(BALL_ATTACKS))
def test_runs_on_cuda(digits_split, digits_cnn, name):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    import copy

    model = copy.deepcopy(digits_cnn).cuda()
    x, y = digits_subset(digits_split, 40)
    index = torch.arange(40)
    cuda = build(name, "linf").perturb(model, x.cuda(), y.cuda(), index=index)
    assert cuda.x_adv.device.type == "cuda" and cuda.robust.device.type == "cuda"
    assert_feasible(cuda, x.cuda(), "linf", EPS["linf"])
    cpu = build(name, "linf").perturb(digits_cnn, x, y, index=index)
    # Same random numbers on both devices; the models' float rounding may differ in the last bits.
    assert (cuda.robust.cpu() == cpu.robust).float().mean().item() >= 0.9


@pytest.mark.gpu
@pytest.mark.parametrize(("name", "options", "runs_and_compactions"), SYNC_CASES)
def test_cuda_synchronisations_are_the_ones_counted_on_cpu(digits_split, digits_cnn, name, options,
                                                           runs_and_compactions):  # fmt: skip
    # CUDA's own sync detector: catches a wait the CPU count cannot see (a copy to the host, say).
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    import copy
    import warnings

    model = copy.deepcopy(digits_cnn).cuda()
    x, y = digits_subset(digits_split, 100)
    x, y = x.cuda(), y.cuda()
    attack = make_attack(name, norm="linf", eps=0.15, **options)
    attack.perturb(model, x, y)  # warm-up: first-call set-up (cuDNN, allocator) is not the attack's
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            attack.perturb(model, x, y)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) <= runs_and_compactions, syncs
