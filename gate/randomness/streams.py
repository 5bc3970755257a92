"""Counter-based random numbers on the device, keyed by sample index, so a sample's noise never depends on its batch.

Used by the attacks (random starts, Square's proposals) and by export parity's noise; gate/randomness/generators.py
holds the CPU-generator counterpart for code that draws with torch's own generators.

A ``torch.Generator`` hands out one stream per batch: the noise a sample receives then depends on its
position and on which other samples share the batch, and a sharded evaluation would not reproduce an
unsharded one. Here every number is a hash of ``(sample index, stream, element)``: the index is mixed
with the murmur3 32-bit finaliser, the stream and tag on the host, and the elements follow SplitMix's
construction (a Weyl sequence, avalanched). All of it is integer tensor ops on the input's device: no
host round trip, and the same values on CPU and CUDA.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

_MASK32 = 0xFFFFFFFF
_GOLDEN32 = 0x9E3779B9


def _mul32(h: torch.Tensor, constant: int) -> torch.Tensor:
    """``(h * constant) mod 2**32`` for 32-bit values held in int64, in one multiply that cannot overflow.

    A constant of 2**31 or more is used as ``constant - 2**32``, congruent modulo 2**32 and below 2**31
    in size, so the product of a value below 2**32 stays inside int64 (signed overflow is undefined in
    the kernels); the mask then keeps the low 32 bits of its two's complement.
    """
    signed = constant - (1 << 32) if constant >= 1 << 31 else constant
    return (h * signed) & _MASK32


def _mix32(h: torch.Tensor) -> torch.Tensor:
    """The murmur3 ``fmix32`` avalanche step (Appleby, MurmurHash3)."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def _mix32_int(h: int) -> int:
    """:func:`_mix32` on a Python integer: streams are mixed on the host, costing no device operations."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK32
    return h ^ (h >> 16)


def stream_key(stream: Sequence[int]) -> int:
    """A 32-bit key for a stream ``(seed, target rank, restart, ...)``, mixed part by part."""
    key = 0x5BD1E995
    for part in stream:
        key = _mix32_int(key ^ ((int(part) * _GOLDEN32) & _MASK32))
    return key


class SampleRandom:
    """Independent, reproducible random streams for a batch of samples identified by ``index``.

    ``stream`` (e.g. ``(seed, target rank, restart)``) selects a family of streams; each call names a
    further ``tag`` (e.g. the step number), so repeated calls never reuse numbers.
    """

    def __init__(self, index: torch.Tensor, stream: Sequence[int]) -> None:
        index = index.to(torch.int64)
        # Two device mixes per sample (low and high 32 bits of the index); the stream is mixed on the host.
        state = _mix32((index & _MASK32) ^ stream_key(stream))
        self.state = _mix32(state ^ ((index >> 32) & _MASK32))
        self.device = index.device

    def __len__(self) -> int:
        return self.state.shape[0]

    def subset(self, keep: torch.Tensor) -> SampleRandom:
        """The streams of the samples selected by ``keep`` (an index tensor or boolean mask)."""
        child = object.__new__(SampleRandom)
        child.state = self.state[keep]
        child.device = self.device
        return child

    def _bits(self, tag: int, shape: Sequence[int]) -> torch.Tensor:
        # A Weyl sequence per (sample, tag), started at the sample's state xor the (host-mixed) tag and
        # stepped by the golden ratio, then avalanched: SplitMix's construction, a few dozen device ops.
        count = math.prod(shape)
        start = self.state ^ _mix32_int((int(tag) * 0x27D4EB2F + 0x165667B1) & _MASK32)
        counter = _mul32(torch.arange(count, device=self.device, dtype=torch.int64), _GOLDEN32)
        bits = _mix32((start[:, None] + counter[None, :]) & _MASK32)
        return bits.view(len(self), *shape)

    def uniform(self, tag: int, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Uniform numbers in ``[0, 1)`` of shape ``[N, *shape]`` (``[0, 1]`` once rounded to half precision).

        The 24-bit integers are scaled in float32 or wider: float16 cannot hold them (its largest finite
        value is 65504), so scaling in float16 would give infinities.
        """
        wide = dtype if dtype.itemsize >= 4 else torch.float32
        return ((self._bits(tag, shape) >> 8).to(wide) * (2.0**-24)).to(dtype)

    def signs(self, tag: int, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Random ``-1`` / ``+1`` of shape ``[N, *shape]``."""
        return ((self._bits(tag, shape) >> 31) * 2 - 1).to(dtype)

    def normal(self, tag: int, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard normal numbers of shape ``[N, *shape]`` (Box-Muller on two uniform streams)."""
        u1 = self.uniform(2 * tag + 1, shape, torch.float64) + 2.0**-25
        u2 = self.uniform(2 * tag + 2, shape, torch.float64)
        return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)).to(dtype)
