"""Per-channel normalisation applied inside gate, so attack budgets stay in the policy's input range."""

from __future__ import annotations

import torch
from torch import nn

from gate.errors import ModelError


class Normalize(nn.Module):
    """``(x - mean) / std`` over the channel axis (axis 1) of a batch."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Statistics follow the input, so the session's CPU copy and a CUDA gradient model can share this module.
        view = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.to(x.device).view(view)) / self.std.to(x.device).view(view)


def make_normalize(
    mean: tuple[float, ...] | None, std: tuple[float, ...] | None, input_shape: tuple[int, ...]
) -> Normalize | None:
    """A ``Normalize`` for the given statistics (a single value applies to all channels), or ``None``."""
    if mean is None and std is None:
        return None
    channels = input_shape[0] if input_shape else 1
    values = []
    for name, given, default in (("mean", mean, 0.0), ("std", std, 1.0)):
        stats = given if given is not None else (default,)
        if len(stats) == 1:
            stats = stats * channels
        if len(stats) != channels:
            raise ModelError(
                f"{name} has {len(stats)} values but the input has {channels} channel(s) "
                f"(input shape {list(input_shape)}); give one value per channel or a single value"
            )
        values.append(tuple(stats))
    return Normalize(values[0], values[1])


class FixedBatch(nn.Module):
    """Feed a module that only accepts batches of exactly ``batch`` samples: split, zero-pad, crop (differentiable)."""

    def __init__(self, module: nn.Module, batch: int) -> None:
        super().__init__()
        self.module = module
        self.batch = batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = []
        for chunk in torch.split(x, self.batch):
            count = len(chunk)
            if count < self.batch:
                chunk = torch.cat([chunk, chunk.new_zeros((self.batch - count, *chunk.shape[1:]))])
            outputs.append(self.module(chunk)[:count])
        return torch.cat(outputs)


def with_preprocessing(
    module: nn.Module, normalize: Normalize | None, fixed_batch: int | None = None
) -> nn.Module:
    """``module`` with ``normalize`` in front, so it maps input-range x to logits, for any batch size."""
    if fixed_batch is not None:
        module = FixedBatch(module, fixed_batch)
    return module if normalize is None else nn.Sequential(normalize, module)
