"""Neural-network operators: convolutions, dense layers, pooling and normalisation, inference mode only."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gate.model.twin.call import OpCall, OpFunction

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _spatial_pads(
    call: OpCall, x: torch.Tensor, kernel: list[int], strides: list[int], dilations: list[int]
) -> list[int]:
    """ONNX pads ``[b1, b2, …, e1, e2, …]`` with ``auto_pad`` resolved; SAME puts the odd pixel as ONNX says."""
    spatial = x.shape[2:]
    auto_pad = call.attr("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, large = total // 2, total - total // 2
            begins.append(small if auto_pad == "SAME_UPPER" else large)
            ends.append(large if auto_pad == "SAME_UPPER" else small)
        return begins + ends
    if auto_pad == "VALID":
        return [0] * (2 * len(spatial))
    return list(call.attr("pads", [0] * (2 * len(spatial))))


def _torch_pad(pads: list[int]) -> list[int]:
    """ONNX ``[b1, b2, e1, e2]`` to ``F.pad``'s last-axis-first ``[b2, e2, b1, e1]``."""
    rank = len(pads) // 2
    result: list[int] = []
    for axis in reversed(range(rank)):
        result += [pads[axis], pads[axis + rank]]
    return result


def _window(call: OpCall, x: torch.Tensor, kernel: list[int]) -> tuple[list[int], list[int], list[int]]:
    """Strides, dilations and resolved pads of a convolution or pooling window."""
    rank = x.dim() - 2
    strides = list(call.attr("strides", [1] * rank))
    dilations = list(call.attr("dilations", [1] * rank))
    return strides, dilations, _spatial_pads(call, x, kernel, strides, dilations)


def conv(call: OpCall, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    rank = x.dim() - 2
    if rank not in _CONV:
        raise call.unsupported(f"{rank}-D convolution")
    strides, dilations, pads = _window(call, x, list(w.shape[2:]))
    x = F.pad(x, _torch_pad(pads)) if any(pads) else x
    return _CONV[rank](x, w, b, stride=strides, dilation=dilations, groups=call.attr("group", 1))


def conv_transpose(
    call: OpCall, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None
) -> torch.Tensor:
    rank = x.dim() - 2
    if rank not in _CONV_T or call.attr("output_shape") is not None:
        raise call.unsupported("output_shape or a rank other than 1-3")
    if call.attr("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise call.unsupported("auto_pad SAME with ConvTranspose")
    strides = list(call.attr("strides", [1] * rank))
    dilations = list(call.attr("dilations", [1] * rank))
    pads = list(call.attr("pads", [0] * (2 * rank)))
    output_padding = list(call.attr("output_padding", [0] * rank))
    y = _CONV_T[rank](
        x,
        w,
        b,
        stride=strides,
        output_padding=output_padding,
        groups=call.attr("group", 1),
        dilation=dilations,
    )
    # Cropping afterwards handles asymmetric pads, which the torch functional cannot take directly.
    crop = tuple(slice(pads[i], y.shape[2 + i] - pads[i + rank]) for i in range(rank))
    return y[(slice(None), slice(None), *crop)]


def gemm(call: OpCall, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
    a = a.t() if call.attr("transA", 0) else a
    b = b.t() if call.attr("transB", 0) else b
    y = call.attr("alpha", 1.0) * (a @ b)
    return y if c is None else y + call.attr("beta", 1.0) * c


def max_pool(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    rank = x.dim() - 2
    if call.num_outputs > 1:
        raise call.unsupported("the Indices output")
    kernel = list(call.attr("kernel_shape"))
    strides, dilations, pads = _window(call, x, kernel)
    x = F.pad(x, _torch_pad(pads), value=-math.inf) if any(pads) else x
    return _MAX_POOL[rank](
        x, kernel, stride=strides, dilation=dilations, ceil_mode=bool(call.attr("ceil_mode", 0))
    )


def average_pool(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    rank = x.dim() - 2
    kernel = list(call.attr("kernel_shape"))
    strides, dilations, pads = _window(call, x, kernel)
    if any(d != 1 for d in dilations):
        raise call.unsupported("dilated average pooling")
    ceil_mode = bool(call.attr("ceil_mode", 0))
    pool = _AVG_POOL[rank]
    if not any(pads):
        return pool(x, kernel, stride=strides, ceil_mode=ceil_mode)
    padded = F.pad(x, _torch_pad(pads))
    summed = pool(padded, kernel, stride=strides, ceil_mode=ceil_mode)
    if call.attr("count_include_pad", 0):
        return summed
    # Divide by the number of real (unpadded) pixels in each window, as ONNX's default asks.
    ones = F.pad(torch.ones_like(x[:1, :1]), _torch_pad(pads))
    return summed / pool(ones, kernel, stride=strides, ceil_mode=ceil_mode)


def global_average_pool(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


def global_max_pool(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    return torch.amax(x, dim=tuple(range(2, x.dim())), keepdim=True)


def batch_normalization(
    call: OpCall,
    x: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
) -> torch.Tensor:
    if call.attr("training_mode", 0) or call.num_outputs > 1:
        raise call.unsupported("training mode")
    eps = call.attr("epsilon", 1e-5)
    if mean.requires_grad or var.requires_grad:
        # Statistics computed in the graph from the input (batch statistics): F.batch_norm refuses to
        # differentiate through running statistics, so normalise explicitly.
        shape = (1, -1) + (1,) * (x.dim() - 2)
        normalised = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + eps)
        return normalised * scale.reshape(shape) + bias.reshape(shape)
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=eps)


def instance_normalization(
    call: OpCall, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    return F.instance_norm(x, weight=scale, bias=bias, eps=call.attr("epsilon", 1e-5))


def layer_normalization(
    call: OpCall, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    if call.num_outputs > 1:
        raise call.unsupported("the Mean and InvStdDev outputs")
    axis = call.attr("axis", -1) % x.dim()
    shape = x.shape[axis:]
    return F.layer_norm(
        x,
        shape,
        scale.expand(shape),
        None if bias is None else bias.expand(shape),
        eps=call.attr("epsilon", 1e-5),
    )


def dropout(
    call: OpCall, x: torch.Tensor, ratio: torch.Tensor | None = None, training: torch.Tensor | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    if training is not None and bool(training):
        raise call.unsupported("training mode")
    mask = torch.ones_like(x, dtype=torch.bool)
    return (x, mask) if call.num_outputs > 1 else x


# (mode, coordinate_transformation_mode, nearest_mode) -> (torch mode, align_corners); exactly the mappings
# where F.interpolate computes what ONNX specifies. Exporters emit the first one for nn.Upsample (nearest).
_RESIZE_MODES: dict[tuple[str, str, str], tuple[str, bool | None]] = {
    ("nearest", "asymmetric", "floor"): ("nearest", None),
    ("nearest", "half_pixel", "round_prefer_ceil"): ("nearest-exact", None),
    ("linear", "half_pixel", ""): ("linear", False),
    ("linear", "pytorch_half_pixel", ""): ("linear", False),
    ("linear", "align_corners", ""): ("linear", True),
    ("cubic", "half_pixel", ""): ("cubic", False),
    ("cubic", "pytorch_half_pixel", ""): ("cubic", False),
    ("cubic", "align_corners", ""): ("cubic", True),
}
_INTERPOLATE_NAMES = {
    ("linear", 1): "linear",
    ("linear", 2): "bilinear",
    ("linear", 3): "trilinear",
    ("cubic", 2): "bicubic",
}


def resize(
    call: OpCall,
    x: torch.Tensor,
    roi: torch.Tensor | None = None,
    scales: torch.Tensor | None = None,
    sizes: torch.Tensor | None = None,
) -> torch.Tensor:
    mode = call.attr("mode", "nearest")
    transform = call.attr("coordinate_transformation_mode", "half_pixel")
    nearest = call.attr("nearest_mode", "round_prefer_floor") if mode == "nearest" else ""
    key = (mode, transform, nearest)
    unsupported = (
        key not in _RESIZE_MODES
        or call.attr("antialias", 0)
        or call.attr("axes") is not None
        or call.attr("keep_aspect_ratio_policy", "stretch") != "stretch"
        or (
            mode == "cubic"
            and (call.attr("cubic_coeff_a", -0.75) != -0.75 or call.attr("exclude_outside", 0))
        )
    )
    if unsupported:
        raise call.unsupported(
            f"Resize with mode={mode}, coordinate_transformation_mode={transform} {nearest}"
        )
    torch_mode, align_corners = _RESIZE_MODES[key]
    rank = x.dim() - 2
    torch_mode = _INTERPOLATE_NAMES.get((torch_mode, rank), torch_mode)
    if sizes is not None and sizes.numel():
        target = [int(v) for v in sizes.tolist()]
        if target[:2] != list(x.shape[:2]):
            raise call.unsupported("resizing the batch or channel axis")
        return F.interpolate(x, size=target[2:], mode=torch_mode, align_corners=align_corners)
    factors = [float(v) for v in scales.tolist()]
    if factors[:2] != [1.0, 1.0]:
        raise call.unsupported("resizing the batch or channel axis")
    return F.interpolate(
        x,
        scale_factor=factors[2:],
        mode=torch_mode,
        align_corners=align_corners,
        recompute_scale_factor=False,
    )


OPS: dict[str, OpFunction] = {
    "Resize": resize,
    "Conv": conv,
    "ConvTranspose": conv_transpose,
    "Gemm": gemm,
    "MaxPool": max_pool,
    "AveragePool": average_pool,
    "GlobalAveragePool": global_average_pool,
    "GlobalMaxPool": global_max_pool,
    "BatchNormalization": batch_normalization,
    "InstanceNormalization": instance_normalization,
    "LayerNormalization": layer_normalization,
    "Dropout": dropout,
}
