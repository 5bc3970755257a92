"""Per-sample seeds: a sample's randomness depends on the run's seed and its data set index only.

(gate/randomness/streams.py is the on-device counterpart used by the attacks.)

That is what makes a sharded or resumed run reproduce an unsharded one: the noise a sample gets never
depends on which other samples share its batch or its shard.
"""

from __future__ import annotations

import hashlib

import torch


def sample_seed(seed: int, index: int, *, stream: str) -> int:
    """A 64-bit seed for one sample: a stable hash of ``(stream, seed, index)`` (no numpy/torch version dependence)."""
    digest = hashlib.blake2b(f"gate-{stream}:{int(seed)}:{int(index)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def sample_generators(seed: int, index: torch.Tensor, *, stream: str) -> list[torch.Generator]:
    """One seeded CPU generator per sample (draws are made on the CPU, so CPU and CUDA runs agree)."""
    return [torch.Generator().manual_seed(sample_seed(seed, i, stream=stream)) for i in index.tolist()]
