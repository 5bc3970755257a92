"""FAB, the fast adaptive boundary attack (Croce & Hein 2020, "Minimally distorted adversarial examples
with a fast adaptive boundary attack"): step to the projection onto the linearised decision boundary,
biased towards the original point, so it finds adversarial points of small norm; counted as a success
here only when that norm is within ``eps``. FAB-T linearises the boundary to one target class."""

from __future__ import annotations

from typing import ClassVar

import torch

from gate.attacks.base import (
    Attack,
    Model,
    RunResult,
    keep_rows,
    loss_and_grad,
    predict,
    rows_left,
    where_samples,
)
from gate.attacks.threat import Norm, per_sample, perturbation_norm
from gate.randomness.streams import SampleRandom
from gate.tasks.classification import is_correct

_COMPACT_EVERY = 5  # steps between dropping points already broken within eps (a host sync)


def _flat_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).flatten(1).sum(dim=1)


def project_onto_hyperplane_in_box(
    w: torch.Tensor, c: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, norm: Norm
) -> torch.Tensor:
    """The smallest ``d`` (in ``norm``) with ``<w, d> = c`` and ``lower <= d <= upper`` (``lower <= 0 <= upper``).

    The minimiser is ``clip(lam * v, lower, upper)`` with ``v = sign(w)`` for linf and ``v = w`` for l2
    (KKT conditions), ``v`` signed towards ``c``. Coordinate ``i`` then contributes
    ``b_i * min(lam, t_i)`` to ``|<w, d>|``, with ``b_i = |w_i|`` (linf) or ``w_i**2`` (l2) and ``t_i``
    the ``lam`` at which it reaches the box. That sum is piecewise linear and increasing in ``lam``, so
    sorting the ``t_i`` finds the exact ``lam`` in one pass of a dozen tensor ops (the paper's sorting
    route; a bisection needs hundreds, and on small inputs their launch cost dominates). An unreachable
    ``c`` gives the box corner.
    """
    direction = (w.sign() if norm == "linf" else w) * per_sample(c.sign(), w)
    flat = direction.flatten(1)
    # How far each coordinate may move in its direction before it leaves the box.
    room = torch.where(flat > 0, upper.flatten(1), -lower.flatten(1)).clamp_(min=0)
    weight = w.abs().flatten(1)
    saturated = weight * room  # a coordinate's contribution once it is at the box
    if norm == "linf":  # d_i grows like lam: it reaches the box at lam = room_i, at rate |w_i|
        slope, saturates_at = weight, room * (weight > 0)
    else:  # d_i grows like lam * |w_i|: it reaches the box at lam = room_i / |w_i|, at rate w_i**2
        slope = weight.square()
        saturates_at = torch.where(weight > 0, room / weight.clamp(min=1e-30), 0.0)
    # Coordinates that do not move (w_i = 0) saturate at 0 with slope 0: first in the order, adding nothing.
    t, order = saturates_at.sort(dim=1)
    b = slope.gather(1, order)
    saturated = saturated.gather(1, order)
    done_before = saturated.cumsum(dim=1) - saturated
    slope_from = b.sum(dim=1, keepdim=True) - (b.cumsum(dim=1) - b)  # coordinates not yet saturated
    reached = done_before + t * slope_from  # f(t_k)
    target = c.abs()[:, None]
    k = (reached < target).sum(dim=1, keepdim=True).clamp_(max=flat.shape[1] - 1)
    lam = ((target - done_before.gather(1, k)) / slope_from.gather(1, k).clamp(min=1e-30))[:, 0]
    # Unreachable: every moving coordinate at its bound (the largest t).
    corner = t[:, -1]
    lam = torch.where(reached[:, -1] < target[:, 0], corner, lam.clamp_(min=0).minimum(corner))
    return torch.minimum(torch.maximum(per_sample(lam, w) * direction, lower), upper)


class FAB(Attack):
    """FAB-T by default (one run per target class on still-robust points); ``targeted=False`` linearises
    towards the currently strongest other class instead of scanning all classes."""

    name: ClassVar[str] = "fab"

    def __init__(
        self,
        *,
        norm: Norm,
        eps: float,
        bounds: tuple[float, float] = (0.0, 1.0),
        steps: int = 100,
        restarts: int = 1,
        seed: int = 0,
        targeted: bool = True,
        n_target_classes: int = 9,
        alpha_max: float = 0.1,
        overshoot: float = 1.05,
        backward_step: float = 0.9,
    ) -> None:
        super().__init__(
            norm=norm, eps=eps, bounds=bounds, steps=steps, restarts=restarts, seed=seed,
            targeted=targeted, n_target_classes=n_target_classes,
        )  # fmt: skip
        self.alpha_max = alpha_max
        self.overshoot = overshoot
        self.backward_step = backward_step

    def _boundary(self, model: Model, x_cur: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None):
        """Value and gradient of ``z_target - z_y`` at ``x_cur`` (the boundary is where it is zero)."""

        def gap(logits: torch.Tensor) -> torch.Tensor:
            chosen = target
            if chosen is None:
                chosen = logits.detach().scatter(1, y[:, None], float("-inf")).argmax(dim=1)
            return logits.gather(1, chosen[:, None])[:, 0] - logits.gather(1, y[:, None])[:, 0]

        value, _, grad = loss_and_grad(model, x_cur, gap)
        return value, grad

    def _step(self, model, x, x_cur, y, target) -> torch.Tensor:
        """Paper eq. (8): a convex mix of the projections from the current and the original point."""
        low, high = self.bounds
        value, w = self._boundary(model, x_cur, y, target)
        d_cur = project_onto_hyperplane_in_box(w, -value, low - x_cur, high - x_cur, self.norm)
        value_at_x = value + _flat_dot(w, x - x_cur)
        d_orig = project_onto_hyperplane_in_box(w, -value_at_x, low - x, high - x, self.norm)
        size_cur = perturbation_norm(x_cur, x_cur + d_cur, self.norm)
        size_orig = perturbation_norm(x, x + d_orig, self.norm)
        alpha = (size_cur / (size_cur + size_orig).clamp(min=1e-12)).clamp(max=self.alpha_max)
        alpha = per_sample(alpha, x)
        moved = (1 - alpha) * (x_cur + self.overshoot * d_cur) + alpha * (x + self.overshoot * d_orig)
        return moved.clamp_(low, high)

    def _run(
        self,
        model: Model,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        rng: SampleRandom,
        restart: int,
    ) -> RunResult:
        x_cur = x.clone()
        if restart > 0:  # later restarts start at a random point half-way out in the ball
            x_cur = self.threat.project(x + 0.5 * (self.threat.random_start(x, rng, tag=0) - x), x)
        limit = self.eps * (1 + 1e-6)
        x_out = x.clone()
        ids = torch.arange(x.shape[0], device=x.device)
        x_best = x.clone()
        best_size = torch.full((x.shape[0],), float("inf"), device=x.device, dtype=x.dtype)
        for step in range(self.steps):
            if step and step % _COMPACT_EVERY == 0:
                # Points already broken within eps are done: a smaller perturbation would not change the
                # verdict, so they leave the batch (one host sync every few steps).
                done = best_size <= limit
                rows = rows_left(done)
                if rows is not None:
                    x_out.index_copy_(0, ids, where_samples(done, x_best, x))
                    ids, x, x_cur, y, x_best, best_size, target = keep_rows(
                        rows, ids, x, x_cur, y, x_best, best_size, target
                    )
                    if ids.numel() == 0:
                        return RunResult(x_out)
            x_next = self._step(model, x, x_cur, y, target)
            adversarial = ~is_correct(predict(model, x_next), y)
            size = perturbation_norm(x, x_next, self.norm)
            better = adversarial & (size < best_size)
            x_best = where_samples(better, x_next, x_best)
            best_size = torch.where(better, size, best_size)
            pulled_back = (1 - self.backward_step) * x + self.backward_step * x_next
            x_cur = where_samples(adversarial, pulled_back, x_next)
        x_out.index_copy_(0, ids, where_samples(best_size <= limit, x_best, x))
        return RunResult(x_out)
