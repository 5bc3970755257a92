"""Shape and data-movement operators: reshape, slicing, gathering, padding, constants."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gate.model.twin.call import OpCall, OpFunction, ints


def identity(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    return x


def constant(call: OpCall) -> torch.Tensor:
    if "value" in call.attrs:
        return call.attrs["value"]
    for key, dtype in (("value_float", torch.float32), ("value_floats", torch.float32)):
        if key in call.attrs:
            return torch.tensor(call.attrs[key], dtype=dtype)
    for key in ("value_int", "value_ints"):
        if key in call.attrs:
            return torch.tensor(call.attrs[key], dtype=torch.int64)
    raise call.unsupported(f"the attribute(s) {sorted(call.attrs)}")


def constant_of_shape(call: OpCall, shape: torch.Tensor) -> torch.Tensor:
    value = call.attr("value", torch.zeros(1, dtype=torch.float32))
    return value.reshape(()).expand(ints(shape)).clone()


def shape(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    start, end = call.attr("start", 0), call.attr("end")
    return torch.tensor(x.shape[start:end], dtype=torch.int64)


def size(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(x.numel(), dtype=torch.int64)


def flatten(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    axis = call.attr("axis", 1) % (x.dim() + 1) if x.dim() else 0
    return x.reshape(math.prod(x.shape[:axis]), -1)


def reshape(call: OpCall, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    dims = ints(target)
    if not call.attr("allowzero", 0):
        # A 0 means "copy this dimension from the input" unless allowzero is set.
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def transpose(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    perm = call.attr("perm") or list(reversed(range(x.dim())))
    return x.permute(*perm)


def concat(call: OpCall, *xs: torch.Tensor) -> torch.Tensor:
    return torch.cat([x for x in xs if x is not None], dim=call.attr("axis"))


def gather(call: OpCall, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    axis = call.attr("axis", 0) % x.dim()
    wrapped = indices.long() % x.shape[axis]
    picked = torch.index_select(x, axis, wrapped.reshape(-1))
    return picked.reshape((*x.shape[:axis], *indices.shape, *x.shape[axis + 1 :]))


def gather_nd(call: OpCall, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    batch_dims = call.attr("batch_dims", 0)
    depth = indices.shape[-1]
    batch_shape, rest_shape = x.shape[:batch_dims], x.shape[batch_dims + depth :]
    batches = math.prod(batch_shape)
    flat = x.reshape(batches, *x.shape[batch_dims:])
    index = indices.long().reshape(batches, -1, depth)
    # Negative indices count from the back of their axis, as in Gather.
    index = index % torch.tensor(x.shape[batch_dims : batch_dims + depth], device=index.device)
    batch = torch.arange(batches, device=index.device).unsqueeze(1).expand(index.shape[:2])
    picked = flat[(batch, *index.unbind(-1))]
    return picked.reshape(*indices.shape[:-1], *rest_shape)


def depth_to_space(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    block = call.attr("blocksize")
    n, c, h, w = x.shape
    depth = c // (block * block)
    if call.attr("mode", "DCR") == "CRD":
        moved = x.reshape(n, depth, block, block, h, w).permute(0, 1, 4, 2, 5, 3)
    else:
        moved = x.reshape(n, block, block, depth, h, w).permute(0, 3, 4, 1, 5, 2)
    return moved.reshape(n, depth, h * block, w * block)


def space_to_depth(call: OpCall, x: torch.Tensor) -> torch.Tensor:
    block = call.attr("blocksize")
    n, c, h, w = x.shape
    moved = x.reshape(n, c, h // block, block, w // block, block).permute(0, 3, 5, 1, 2, 4)
    return moved.reshape(n, c * block * block, h // block, w // block)


def _axes(call: OpCall, axes: torch.Tensor | None) -> list[int] | None:
    return ints(axes) if axes is not None else call.attr("axes")


def unsqueeze(call: OpCall, x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
    listed = _axes(call, axes) or []
    rank = x.dim() + len(listed)
    for axis in sorted(a % rank for a in listed):
        x = x.unsqueeze(axis)
    return x


def squeeze(call: OpCall, x: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
    listed = _axes(call, axes)
    if not listed:
        return x.squeeze()
    for axis in sorted((a % x.dim() for a in listed), reverse=True):
        x = x.squeeze(axis)
    return x


def slice_(
    call: OpCall,
    x: torch.Tensor,
    starts: torch.Tensor | None = None,
    ends: torch.Tensor | None = None,
    axes: torch.Tensor | None = None,
    steps: torch.Tensor | None = None,
) -> torch.Tensor:
    if call.opset < 10:
        start_list, end_list, axis_list, step_list = (
            call.attr("starts"),
            call.attr("ends"),
            call.attr("axes"),
            None,
        )
    else:
        start_list, end_list, axis_list, step_list = ints(starts), ints(ends), ints(axes), ints(steps)
    axis_list = axis_list or list(range(len(start_list)))
    step_list = step_list or [1] * len(start_list)
    for start, end, axis, step in zip(start_list, end_list, axis_list, step_list, strict=True):
        axis %= x.dim()
        # Python's slice clamping is the numpy rule ONNX follows, including for INT64_MAX ends.
        positions = range(*slice(start, end, step).indices(x.shape[axis]))
        if step > 0:
            index = (slice(None),) * axis + (slice(positions.start, positions.stop, step),)
            x = x[index]
        else:
            x = torch.index_select(x, axis, torch.tensor(list(positions), dtype=torch.long, device=x.device))
    return x


def pad(
    call: OpCall,
    x: torch.Tensor,
    pads: torch.Tensor | None = None,
    value: torch.Tensor | None = None,
    axes: torch.Tensor | None = None,
) -> torch.Tensor:
    pad_list = ints(pads) if pads is not None else list(call.attr("pads"))
    fill = float(value) if value is not None and value.numel() else float(call.attr("value", 0.0))
    axis_list = [a % x.dim() for a in ints(axes)] if axes is not None else list(range(x.dim()))
    full = [0] * (2 * x.dim())
    for i, axis in enumerate(axis_list):
        full[axis], full[axis + x.dim()] = pad_list[i], pad_list[i + len(axis_list)]
    torch_pads: list[int] = []
    for axis in reversed(range(x.dim())):
        torch_pads += [full[axis], full[axis + x.dim()]]
    mode = call.attr("mode", "constant")
    if mode == "constant":
        return F.pad(x, torch_pads, value=fill)
    modes = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}
    if mode not in modes:
        raise call.unsupported(f"mode {mode!r}")
    # torch pads only the trailing spatial dims in these modes; leading zero pads are dropped.
    while torch_pads and torch_pads[-2:] == [0, 0]:
        torch_pads = torch_pads[:-2]
    return F.pad(x, torch_pads, mode=modes[mode])


def expand(call: OpCall, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return x.expand(torch.broadcast_shapes(x.shape, tuple(ints(target))))


def tile(call: OpCall, x: torch.Tensor, repeats: torch.Tensor) -> torch.Tensor:
    return x.repeat(*ints(repeats))


def split(call: OpCall, x: torch.Tensor, sizes: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    axis = call.attr("axis", 0) % x.dim()
    listed = ints(sizes) if sizes is not None else call.attr("split")
    if not listed:
        count = call.attr("num_outputs", call.num_outputs)
        listed = math.ceil(x.shape[axis] / count)
    return tuple(torch.split(x, listed, dim=axis))


def range_(call: OpCall, start: torch.Tensor, limit: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)


OPS: dict[str, OpFunction] = {
    "Identity": identity,
    "Constant": constant,
    "ConstantOfShape": constant_of_shape,
    "Shape": shape,
    "Size": size,
    "Flatten": flatten,
    "Reshape": reshape,
    "Transpose": transpose,
    "Concat": concat,
    "Gather": gather,
    "GatherND": gather_nd,
    "DepthToSpace": depth_to_space,
    "SpaceToDepth": space_to_depth,
    "Unsqueeze": unsqueeze,
    "Squeeze": squeeze,
    "Slice": slice_,
    "Pad": pad,
    "Expand": expand,
    "Tile": tile,
    "Split": split,
    "Range": range_,
}
