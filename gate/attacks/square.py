"""Square Attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box adversarial
attack via random search"): random search over square-shaped updates, accepted when the margin drops.

Score-based: it only reads logits under ``torch.no_grad()``, so the model may be any callable (an ONNX
Runtime session wrapped to take and return tensors). Inputs must be images ``[N, C, H, W]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from gate.attacks import losses
from gate.attacks.base import Attack, Model, RunResult, SampleRows, rows_left, where_samples
from gate.attacks.threat import Norm, l2_norm, per_sample
from gate.randomness.streams import SampleRandom

# The p_init halving schedule of the paper, on iterations rescaled to a 10,000-query budget.
_SCHEDULE = (
    (10, 1),
    (50, 2),
    (200, 4),
    (500, 8),
    (1000, 16),
    (2000, 32),
    (4000, 64),
    (6000, 128),
    (8000, 256),
)
_COMPACT_EVERY = 25  # drop broken samples from the working batch every so many iterations (a host sync)
_BLOCK_TAG = 1 << 20  # random-stream tags of the proposal blocks, clear of the initial point's tags


def square_fraction(p_init: float, iteration: int, budget: int) -> float:
    """The fraction ``p`` of pixels the square covers at ``iteration`` (halved on the paper's schedule)."""
    rescaled = int(iteration / budget * 10000)
    divisor = 512
    for limit, value in _SCHEDULE:
        if rescaled <= limit:
            divisor = value
            break
    return p_init / divisor


def square_side(p: float, height: int, width: int) -> int:
    """Side length of a square covering about ``p`` of an ``height x width`` image (at least one pixel)."""
    return min(max(round(math.sqrt(p * height * width)), 1), height, width)


def window_mask(top: torch.Tensor, left: torch.Tensor, side: int, height: int, width: int) -> torch.Tensor:
    """Boolean ``[N, 1, H, W]`` masks of the per-sample squares ``[top, top + side) x [left, left + side)``."""
    rows = torch.arange(height, device=top.device)[None, :] - top[:, None]
    cols = torch.arange(width, device=top.device)[None, :] - left[:, None]
    inside_rows = (rows >= 0) & (rows < side)
    inside_cols = (cols >= 0) & (cols < side)
    return (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]


class WindowTable:
    """Square windows of one side length, looked up instead of computed: per iteration, two multiplies
    turn uniform numbers into window positions and two gathers and an ``and`` give the masks (computing
    them from ``arange`` comparisons takes a dozen operations, which on a GPU are a dozen launches)."""

    def __init__(self, side: int, height: int, width: int, device: torch.device) -> None:
        self.side = side
        # (rows, cols) made on the device: copying a host list there would make the host wait. Both are
        # small integers, so ``h + (w - h) * [0, 1]`` is exact.
        rows, cols = height - side + 1, width - side + 1
        self.counts = torch.arange(2, device=device, dtype=torch.float32).mul_(cols - rows).add_(rows)
        # One row per start position, plus a copy of the last: ``u * count`` may round up to ``count``.
        self.rows = self._table(height - side + 1, side, height, device)
        self.cols = self._table(width - side + 1, side, width, device)

    @staticmethod
    def _table(count: int, side: int, size: int, device: torch.device) -> torch.Tensor:
        starts = torch.arange(count + 1, device=device).clamp_(max=count - 1)[:, None]
        cells = torch.arange(size, device=device)[None, :]
        return (cells >= starts) & (cells < starts + side)

    def positions(self, draw: torch.Tensor) -> torch.Tensor:
        """``[N, 2]`` window starts (top, left) from ``[N, 2]`` uniform numbers in ``[0, 1)``."""
        return (draw * self.counts).long()

    def mask(self, positions: torch.Tensor) -> torch.Tensor:
        """Boolean ``[N, 1, H, W]`` masks of the windows starting at ``positions``."""
        return self.rows[positions[:, 0]][:, None, :, None] & self.cols[positions[:, 1]][:, None, None, :]


def centred_bump(rows: int, cols: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Nested rectangles around the centre with weight ``1 / (k + 1)**2`` for ring ``k`` (paper, sec. 3.2)."""
    r = torch.arange(rows, device=device, dtype=dtype)
    c = torch.arange(cols, device=device, dtype=dtype)
    ring = torch.maximum((r - (rows - 1) / 2).abs()[:, None], (c - (cols - 1) / 2).abs()[None, :]).floor()
    max_ring = int(max(rows, cols) // 2) + 1
    # 1 / (k + 1)**2 in float64, as Python computes it, made on the device (no host copy, no wait).
    weights = (1.0 / (torch.arange(max_ring, device=device, dtype=torch.float64) + 1) ** 2).to(dtype)
    tail_sums = weights.flip(0).cumsum(0).flip(0)  # a pixel in ring k lies in every rectangle j >= k
    return tail_sums[ring.long()]


def l2_update_pattern(side: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The L2 square update: two bumps of opposite sign in the two halves, unit norm, ``[side, side]``."""
    top = side // 2
    pattern = torch.zeros(side, side, device=device, dtype=dtype)
    if top:
        pattern[:top] = centred_bump(top, side, device, dtype)
    pattern[top:] = -centred_bump(side - top, side, device, dtype)
    return pattern / pattern.norm()


def place_pattern(pattern: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height: int, width: int):
    """``pattern`` pasted at a per-sample position, zero elsewhere: ``[N, 1, H, W]``."""
    side = pattern.shape[0]
    rows = torch.arange(height, device=top.device)[None, :] - top[:, None]
    cols = torch.arange(width, device=top.device)[None, :] - left[:, None]
    values = pattern[rows.clamp(0, side - 1)[:, :, None], cols.clamp(0, side - 1)[:, None, :]]
    return (values * window_mask(top, left, side, height, width)[:, 0])[:, None]


@dataclass
class _Search(SampleRows):
    """The working batch of samples still being attacked, compacted from time to time."""

    ids: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    x_best: torch.Tensor
    margin_best: torch.Tensor
    queries: torch.Tensor


class Square(Attack):
    """Square Attack, untargeted, margin loss; ``steps`` is the query budget per sample and restart."""

    name: ClassVar[str] = "square"
    supports_targeted: ClassVar[bool] = False
    counts_queries: ClassVar[bool] = True
    needs_gradients: ClassVar[bool] = False

    def __init__(
        self,
        *,
        norm: Norm,
        eps: float,
        bounds: tuple[float, float] = (0.0, 1.0),
        steps: int = 5000,
        restarts: int = 1,
        seed: int = 0,
        p_init: float = 0.8,
    ) -> None:
        super().__init__(norm=norm, eps=eps, bounds=bounds, steps=steps, restarts=restarts, seed=seed)
        if not 0.0 < p_init <= 1.0:
            raise ValueError(f"p_init must be in (0, 1], got {p_init}")
        self.p_init = float(p_init)

    def _margin(self, model: Model, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return losses.margin(model(x_adv), y)

    def _run(
        self,
        model: Model,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        rng: SampleRandom,
        restart: int,
    ) -> RunResult:
        if x.dim() != 4:
            raise ValueError(f"square attack needs images [N, C, H, W], got shape {tuple(x.shape)}")
        ids = torch.arange(x.shape[0], device=x.device)
        x_init = self._initial_point(x, rng)
        queries = torch.ones_like(ids)
        search = _Search(ids, x, y, x_init, self._margin(model, x_init, y), queries)
        x_out, queries_out = x_init.clone(), queries.clone()
        per_iteration = self._draws_per_iteration(x.shape[1])
        draws = signs = torch.empty(0)
        tables: dict[int, WindowTable] = {}
        for iteration in range(1, self.steps):
            offset = iteration % _COMPACT_EVERY
            if offset == 0:
                rows = rows_left(~(search.margin_best > 0))  # a NaN margin leaves too
                if rows is not None:
                    self._write_back(search, x_out, queries_out)
                    search = search.keep(rows)
                    if search.ids.numel() == 0:
                        return RunResult(x_out, queries_out)
            if offset == 0 or iteration == 1:
                # The random numbers of a block of iterations in one draw: on small images drawing them
                # one iteration at a time costs about as much as the model's forward pass.
                block = iteration // _COMPACT_EVERY
                draws = rng.subset(search.ids).uniform(_BLOCK_TAG + block, (_COMPACT_EVERY, per_iteration))
                signs = self._signs(draws[..., per_iteration - x.shape[1] :], x.dtype)
            self._iterate(model, search, draws[:, offset], signs[:, offset], iteration, tables)
        self._write_back(search, x_out, queries_out)
        return RunResult(x_out, queries_out)

    def _draws_per_iteration(self, channels: int) -> int:
        """Uniform numbers one proposal needs: a window position and a sign per channel (l2: two windows
        and a transposition flag as well)."""
        return 2 + channels if self.norm == "linf" else 5 + channels

    @staticmethod
    def _write_back(search: _Search, x_out: torch.Tensor, queries_out: torch.Tensor) -> None:
        x_out.index_copy_(0, search.ids, search.x_best)
        queries_out.index_copy_(0, search.ids, search.queries)

    def _iterate(
        self,
        model: Model,
        search: _Search,
        draw: torch.Tensor,
        signs: torch.Tensor,
        iteration: int,
        tables: dict[int, WindowTable],
    ) -> None:
        """Propose one square update per sample, query it, keep it where the margin dropped."""
        height, width = search.x.shape[-2:]
        side = square_side(square_fraction(self.p_init, iteration, self.steps), height, width)
        if self.norm == "l2":  # the bump needs room: odd sides of at least 3 pixels where the image allows
            side = min(max(side, 3) | 1, height, width)
        if side not in tables:
            tables[side] = WindowTable(side, height, width, search.x.device)
        propose = self._propose_linf if self.norm == "linf" else self._propose_l2
        x_new = propose(search, draw, signs[:, :, None, None], tables[side]).clamp_(*self.bounds)
        still_robust = search.margin_best > 0
        margin = self._margin(model, x_new, search.y)
        improved = (margin < search.margin_best) & still_robust
        search.x_best = where_samples(improved, x_new, search.x_best)
        search.margin_best = torch.where(improved, margin, search.margin_best)
        search.queries += still_robust

    def _signs(self, draw: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The signed step per channel from uniform numbers: ``-eps`` / ``+eps`` for linf (the corners of
        the ball), ``-1`` / ``+1`` for l2; drawn for a whole block of iterations at once."""
        scale = self.eps if self.norm == "linf" else 1.0
        return torch.where(draw < 0.5, -scale, scale).to(dtype)

    def _initial_point(self, x: torch.Tensor, rng: SampleRandom) -> torch.Tensor:
        """Linf: vertical stripes of +-eps; l2: a grid of unit bumps with random signs, scaled to eps."""
        channels, height, width = x.shape[1:]
        if self.norm == "linf":
            stripes = rng.signs(0, (channels, 1, width), x.dtype)
            return (x + self.eps * stripes).clamp_(*self.bounds)
        tile = max(height // 5, 1)
        tile += 1 - tile % 2  # odd, so the bump has a centre pixel
        bump = centred_bump(tile, tile, x.device, x.dtype)
        delta = torch.zeros_like(x)
        for number, top in enumerate(range(0, height - tile + 1, tile)):
            for column, left in enumerate(range(0, width - tile + 1, tile)):
                signs = rng.signs(1 + number * width + column, (channels, 1, 1), x.dtype)
                delta[:, :, top : top + tile, left : left + tile] = bump * signs
        delta = delta * per_sample(self.eps / (l2_norm(delta) + 1e-12), delta)
        return (x + delta).clamp_(*self.bounds)

    def _propose_linf(
        self, search: _Search, draw: torch.Tensor, signs: torch.Tensor, windows: WindowTable
    ) -> torch.Tensor:
        """Set one square of every channel to a random corner ``x +- eps`` (paper, Alg. 2)."""
        window = windows.mask(windows.positions(draw[:, :2]))
        return torch.where(window, search.x + signs, search.x_best)

    def _propose_l2(
        self, search: _Search, draw: torch.Tensor, signs: torch.Tensor, windows: WindowTable
    ) -> torch.Tensor:
        """Move the perturbation mass of two squares into the first, reshaped as a bump (paper, Alg. 3).

        The new first square absorbs the mass of both squares plus any unused budget; the whole
        perturbation is then rescaled to norm ``eps``, so clipping at the bounds never leaves budget idle.
        """
        channels, height, width = search.x.shape[1:]
        side = windows.side
        start, start2 = windows.positions(draw[:, 0:2]), windows.positions(draw[:, 2:4])
        top, left = start[:, 0], start[:, 1]
        first = windows.mask(start)
        union = first | windows.mask(start2)
        delta = search.x_best - search.x
        mass_union = (delta * union).square().sum(dim=(2, 3), keepdim=True)
        spare = (self.eps**2 - l2_norm(delta).square()).clamp_(min=0) / channels
        pattern = l2_update_pattern(side, delta.device, delta.dtype)
        transposed = draw[:, 4] < 0.5
        bump = torch.where(
            per_sample(transposed, delta),
            place_pattern(pattern.T, top, left, height, width),
            place_pattern(pattern, top, left, height, width),
        )
        old = delta * first
        old = old / (old.square().sum(dim=(2, 3), keepdim=True).sqrt() + 1e-12)
        new = bump * signs + old
        new = new / (new.square().sum(dim=(2, 3), keepdim=True).sqrt() + 1e-12)
        new = new * (mass_union + per_sample(spare, mass_union)).sqrt()
        delta = torch.where(union, new, delta)
        return search.x + delta * per_sample(self.eps / (l2_norm(delta) + 1e-12), delta)
