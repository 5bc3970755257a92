"""The model's preprocessing applied inside gate (scale, per-channel normalisation, channel order,
layout), so attack budgets stay in the policy's input range."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from gate.errors import ModelError

Layout = Literal["NCHW", "NHWC"]
Channels = Literal["RGB", "BGR"]
LAYOUTS: tuple[str, ...] = ("NCHW", "NHWC")
CHANNEL_ORDERS: tuple[str, ...] = ("RGB", "BGR")


class Preprocess(nn.Module):
    """What the model expects done to gate's inputs, in this order: ``x * scale``, ``(x - mean) / std``
    per channel, the channels reversed (``BGR``), the channel axis moved last (``NHWC``).

    gate's inputs are always channels-first RGB in the policy's input range, so that budgets, corruptions
    and attributions mean the same thing for every model; the model card says how the model differs.
    """

    def __init__(
        self,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        scale: float = 1.0,
        bgr: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)
        self.scale = float(scale)
        self.bgr = bgr
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Statistics follow the input, so the session's CPU copy and a CUDA gradient model can share this module.
        view = (1, -1) + (1,) * (x.dim() - 2)
        if self.scale != 1.0:
            x = x * self.scale
        x = (x - self.mean.to(x.device).view(view)) / self.std.to(x.device).view(view)
        if self.bgr:
            x = x.flip(1)
        if self.channels_last:
            x = x.movedim(1, -1)
        return x

    def extra_repr(self) -> str:
        return f"scale={self.scale}, bgr={self.bgr}, channels_last={self.channels_last}"


def model_layout_shape(input_shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    """A per-sample shape in gate's channels-first layout as the model sees it."""
    return (*input_shape[1:], input_shape[0]) if layout == "NHWC" else input_shape


def gate_layout_shape(model_shape: tuple[int | str, ...], layout: Layout) -> tuple[int | str, ...]:
    """A per-sample shape the model declares (``[H, W, C]`` for NHWC) in gate's channels-first layout."""
    return (model_shape[-1], *model_shape[:-1]) if layout == "NHWC" and model_shape else model_shape


def make_preprocess(
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    input_shape: tuple[int, ...],
    *,
    scale: float | None = None,
    channels: Channels = "RGB",
    layout: Layout = "NCHW",
) -> Preprocess | None:
    """A ``Preprocess`` for the given settings (a single mean or std applies to all channels), or ``None``
    when there is nothing to do."""
    if mean is None and std is None and scale in (None, 1.0) and channels == "RGB" and layout == "NCHW":
        return None
    if (layout == "NHWC" or channels == "BGR") and len(input_shape) != 3:
        what = "layout NHWC" if layout == "NHWC" else "channels BGR"
        raise ModelError(
            f"{what} is for images [C, H, W], but the input shape is {list(input_shape)}; remove it"
        )
    count = input_shape[0] if input_shape else 1
    if channels == "BGR" and count != 3:
        raise ModelError(f"channels BGR needs 3 channels, but the input has {count}; remove it")
    values = []
    for name, given, default in (("mean", mean, 0.0), ("std", std, 1.0)):
        stats = given if given is not None else (default,)
        if len(stats) == 1:
            stats = stats * count
        if len(stats) != count:
            raise ModelError(
                f"{name} has {len(stats)} values but the input has {count} channel(s) "
                f"(input shape {list(input_shape)}); give one value per channel or a single value"
            )
        values.append(tuple(stats))
    return Preprocess(
        values[0],
        values[1],
        scale=1.0 if scale is None else scale,
        bgr=channels == "BGR",
        channels_last=layout == "NHWC",
    )


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
    module: nn.Module, normalize: Preprocess | None, fixed_batch: int | None = None
) -> nn.Module:
    """``module`` with ``normalize`` in front, so it maps input-range x to logits, for any batch size."""
    if fixed_batch is not None:
        module = FixedBatch(module, fixed_batch)
    return module if normalize is None else nn.Sequential(normalize, module)
