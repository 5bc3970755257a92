"""Quantisation operators: QuantizeLinear and DequantizeLinear, per tensor or per axis, as ONNX Runtime computes.

ONNX Runtime's kernels (MLAS) divide by the scale, round half to even, add the zero point and saturate to
the integer type; dequantising subtracts the zero point in integers and multiplies by the scale. Blocked
quantisation (opset 21's ``block_size``) and the float8/int4 types are refused.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from onnx import TensorProto

from gate.model.twin.call import OpCall, OpFunction
from gate.model.twin.elementwise import TORCH_DTYPES

# The integer types a quantised tensor may have here, with the range it saturates to.
QUANTISED_RANGES: dict[torch.dtype, tuple[int, int]] = {
    torch.uint8: (0, 255),
    torch.int8: (-128, 127),
    torch.int16: (-32768, 32767),
}


def _along_axis(call: OpCall, value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A scale or zero point shaped to broadcast against ``x``: a scalar as is, a 1-D one along ``axis``."""
    if value.numel() == 1:
        return value.reshape(())
    if call.attr("block_size", 0):
        raise call.unsupported("blocked quantisation (block_size)")
    if value.dim() != 1:
        raise call.unsupported(f"a scale or zero point of shape {tuple(value.shape)}")
    shape = [1] * x.dim()
    shape[call.attr("axis", 1) % x.dim()] = -1
    return value.reshape(shape)


def quantised_dtype(call: OpCall, zero_point: torch.Tensor | None) -> torch.dtype:
    """The output type: the zero point's, else opset 21's ``output_dtype``, else uint8 (the default)."""
    if zero_point is not None:
        dtype = zero_point.dtype
    else:
        dtype = TORCH_DTYPES.get(call.attr("output_dtype", 0) or TensorProto.UINT8)
    if dtype not in QUANTISED_RANGES:
        raise call.unsupported(f"quantising to {dtype}")
    return dtype


def quantised_levels(
    call: OpCall,
    x: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    rounding: Callable[[torch.Tensor], torch.Tensor] = torch.round,
) -> tuple[torch.Tensor, torch.dtype]:
    """The quantised values, still in ``x``'s float type, and the integer type they belong to.

    ``rounding`` is the seam the straight-through twin uses to keep a gradient through the rounding.
    """
    dtype = quantised_dtype(call, zero_point)
    low, high = QUANTISED_RANGES[dtype]
    levels = rounding(x / _along_axis(call, scale, x).to(x.dtype))
    if zero_point is not None:
        levels = levels + _along_axis(call, zero_point, x).to(x.dtype)
    return torch.clamp(levels, low, high), dtype


def quantize_linear(
    call: OpCall, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None = None
) -> torch.Tensor:
    levels, dtype = quantised_levels(call, x, scale, zero_point)
    return levels.to(dtype)


def dequantize_linear(
    call: OpCall, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None = None
) -> torch.Tensor:
    # A float input is a quantised tensor the straight-through twin kept in float; its values are integers.
    shifted = x if x.is_floating_point() else x.to(torch.int32)
    if zero_point is not None:
        shifted = shifted - _along_axis(call, zero_point, x).to(shifted.dtype)
    return shifted.to(scale.dtype) * _along_axis(call, scale, x)


OPS: dict[str, OpFunction] = {
    "QuantizeLinear": quantize_linear,
    "DequantizeLinear": dequantize_linear,
}
