"""The per-sample random streams: independent of the batch, uncorrelated, and fixed across releases."""

from __future__ import annotations

import torch

from gate.randomness.streams import SampleRandom, _mul32

# SampleRandom(tensor([0, 1, 2**31 + 5, 2**40 + 3]), (7, 1, 2)), as released.
PINNED_STATES = [4292172532, 3300709306, 212737141, 4050042070]
PINNED_SIGNS = [
    [-1.0, -1.0, 1.0, -1.0],
    [1.0, 1.0, -1.0, -1.0],
    [-1.0, -1.0, -1.0, 1.0],
    [1.0, -1.0, 1.0, -1.0],
]
PINNED_UNIFORM = [
    [0.8958750367164612, 0.2036271095275879, 0.11745059490203857],
    [0.7077827453613281, 0.8738448023796082, 0.34425896406173706],
    [0.06536293029785156, 0.06535464525222778, 0.6803240776062012],
    [0.04607433080673218, 0.8760094046592712, 0.8638570308685303],
]


def test_random_streams_depend_only_on_index_and_stream():
    full = SampleRandom(torch.arange(10), (7, 1))
    shard = SampleRandom(torch.tensor([9, 3]), (7, 1))
    assert torch.equal(full.uniform(5, (4, 3))[[9, 3]], shard.uniform(5, (4, 3)))
    assert not torch.equal(full.uniform(5, (4,)), full.uniform(6, (4,)))
    assert not torch.equal(full.uniform(5, (4,)), SampleRandom(torch.arange(10), (8, 1)).uniform(5, (4,)))


def test_random_numbers_look_uniform():
    rng = SampleRandom(torch.arange(1000), (0,))
    u = rng.uniform(0, (100,))
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.005
    n = rng.normal(1, (100,))
    assert abs(n.mean().item()) < 0.02 and abs(n.std().item() - 1) < 0.02
    assert set(rng.signs(2, (10,)).unique().tolist()) == {-1.0, 1.0}


def test_random_streams_are_uncorrelated_across_tags_samples_and_elements():
    # Element streams are Weyl sequences started at (sample state xor tag key): neighbouring tags,
    # neighbouring sample indices and neighbouring elements must not be correlated.
    rng = SampleRandom(torch.arange(2000), (0, 2, 0))
    u = rng.uniform(0, (200,)) - 0.5
    v = rng.uniform(1, (200,)) - 0.5

    def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a * b).mean() / (a.std() * b.std()))

    assert abs(correlation(u, v)) < 0.01  # tag 0 vs tag 1, same samples
    assert abs(correlation(u[:-1], u[1:])) < 0.01  # sample i vs sample i + 1
    assert abs(correlation(u[:, :-1], u[:, 1:])) < 0.01  # element k vs k + 1


def test_random_streams_are_pinned():
    # The numbers are part of gate's results: a sharded run merged from shards made by another release
    # only equals an unsharded run if the streams never change. Indices past 2**32 use the high bits.
    rng = SampleRandom(torch.tensor([0, 1, 2**31 + 5, 2**40 + 3]), (7, 1, 2))
    assert rng.state.tolist() == PINNED_STATES
    assert rng.signs(9, (4,)).tolist() == PINNED_SIGNS
    torch.testing.assert_close(rng.uniform(3, (3,)), torch.tensor(PINNED_UNIFORM), rtol=0, atol=0)


def test_32_bit_products_are_exact_modulo_2_32():
    # One int64 multiply per product: constants of 2**31 and more are used as their negative twin, so
    # a 32-bit value times the constant never overflows; the extremes of both ranges are included.
    values = [
        0,
        1,
        2**16 - 1,
        2**31 - 1,
        2**31,
        2**32 - 1,
        *torch.randint(0, 2**32, (500,), generator=torch.Generator().manual_seed(0)).tolist(),
    ]
    for constant in (3, 0x7FFFFFFF, 0x80000000, 0x85EBCA6B, 0xC2B2AE35, 0x9E3779B9, 0xFFFFFFFF):
        assert _mul32(torch.tensor(values), constant).tolist() == [(v * constant) % 2**32 for v in values]


def test_uniform_numbers_in_half_precision_are_finite_and_in_range():
    # float16 cannot hold the 24-bit integers the numbers are made from; they are scaled in float32.
    rng = SampleRandom(torch.arange(200), (0,))
    for dtype in (torch.float16, torch.bfloat16):
        u = rng.uniform(0, (100,), dtype)
        assert u.dtype == dtype and torch.isfinite(u).all()
        assert u.min() >= 0 and u.max() <= 1 and abs(u.float().mean().item() - 0.5) < 0.01
        torch.testing.assert_close(u, rng.uniform(0, (100,)).to(dtype), rtol=0, atol=0)
