"""Seeded selection and sharding: same draw for every shard; shards disjoint, their union the whole draw."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gate.data import select_indices
from gate.errors import UsageError


def test_keeps_everything_without_samples() -> None:
    np.testing.assert_array_equal(select_indices(5, samples=None, seed=0, shard=None), np.arange(5))
    np.testing.assert_array_equal(select_indices(5, samples=9, seed=0, shard=None), np.arange(5))


def test_same_seed_same_draw_other_seed_other_draw() -> None:
    first = select_indices(1000, samples=50, seed=7, shard=None)
    assert np.array_equal(first, select_indices(1000, samples=50, seed=7, shard=None))
    assert not np.array_equal(first, select_indices(1000, samples=50, seed=8, shard=None))
    assert first.dtype == np.int64 and len(np.unique(first)) == 50 and np.all(np.diff(first) > 0)


@given(
    n_total=st.integers(0, 400),
    samples=st.one_of(st.none(), st.integers(1, 500)),
    seed=st.integers(-(2**40), 2**40),
    n_shards=st.integers(1, 9),
)
def test_shards_partition_the_unsharded_selection(
    n_total: int, samples: int | None, seed: int, n_shards: int
) -> None:
    full = select_indices(n_total, samples=samples, seed=seed, shard=None)
    shards = [
        select_indices(n_total, samples=samples, seed=seed, shard=(k, n_shards))
        for k in range(1, n_shards + 1)
    ]
    joined = np.concatenate(shards)
    assert len(joined) == len(full) == len(np.unique(joined))  # disjoint, nothing lost
    np.testing.assert_array_equal(np.sort(joined), full)
    assert all(np.all(np.diff(s) > 0) for s in shards)
    assert len(full) == (n_total if samples is None else min(samples, n_total))
    assert full.size == 0 or (full.min() >= 0 and full.max() < n_total)


@pytest.mark.parametrize("shard", [(0, 2), (3, 2), (1, 0), ("a", 2)])
def test_bad_shard_is_a_usage_error(shard: tuple[int, int]) -> None:
    with pytest.raises(UsageError, match="shard"):
        select_indices(10, samples=None, seed=0, shard=shard)


def test_non_positive_samples_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="samples must be a positive"):
        select_indices(10, samples=0, seed=0, shard=None)
