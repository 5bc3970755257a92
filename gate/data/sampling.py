"""Which samples an evaluation uses: a seeded draw, then a deterministic split into shards."""

from __future__ import annotations

import numpy as np

from gate.errors import UsageError


def select_indices(
    n_total: int, *, samples: int | None, seed: int, shard: tuple[int, int] | None
) -> np.ndarray:
    """The sorted data set indices one run (or one shard of it) evaluates.

    The draw depends only on ``(n_total, samples, seed)``, never on ``shard``, so every shard of a run
    sees the same sample; shard ``(k, n)`` (1-based) then takes every n-th of the sorted draw starting
    at the k-th, which makes the shards disjoint and their union the unsharded selection.

    Args:
        n_total: number of samples in the data set.
        samples: how many to draw without replacement; ``None`` (or at least ``n_total``) keeps all.
        seed: seed of the draw.
        shard: ``(k, n)`` to keep only the k-th of n shards, or ``None``.

    Returns:
        int64 indices, sorted ascending.
    """
    if n_total < 0:
        raise UsageError(f"the data set size must be >= 0, found {n_total}")
    if samples is not None and samples < 1:
        raise UsageError(f"samples must be a positive number of samples or unset, found {samples}")
    if samples is None or samples >= n_total:
        chosen = np.arange(n_total, dtype=np.int64)
    else:
        rng = np.random.default_rng(_nonnegative_seed(seed))
        chosen = np.sort(rng.choice(n_total, size=samples, replace=False).astype(np.int64))
    if shard is None:
        return chosen
    k, n = _checked_shard(shard)
    return chosen[k - 1 :: n]


def _checked_shard(shard: tuple[int, int]) -> tuple[int, int]:
    """Reject shard specs that would silently select nothing or everything."""
    try:
        k, n = (int(part) for part in shard)
    except (TypeError, ValueError):
        raise UsageError(f"a shard must be a pair (k, n) of integers, found {shard!r}") from None
    if n < 1 or not 1 <= k <= n:
        raise UsageError(f"a shard (k, n) needs 1 <= k <= n, found ({k}, {n})")
    return k, n


def _nonnegative_seed(seed: int) -> int:
    """numpy seeds must be >= 0: a negative seed is read as the unsigned 64-bit integer with the same bits."""
    seed = int(seed)
    if seed < -(1 << 63):
        raise UsageError(f"a seed must be >= -2**63; found {seed}")
    return seed if seed >= 0 else (1 << 64) + seed
