"""FAB, the fast adaptive boundary attack (Croce & Hein 2020, "Minimally distorted adversarial examples
with a fast adaptive boundary attack"): step to the projection onto the linearised decision boundary,
biased towards the original point, so it finds adversarial points of small norm; counted as a success
here only when that norm is within ``eps``. FAB-T linearises the boundary to one target class."""

from __future__ import annotations

from typing import ClassVar

import torch

from gate.attacks.base import Attack, Model, RunResult, loss_and_grad, predict, where_samples
from gate.attacks.threat import Norm, per_sample, perturbation_norm
from gate.sample_random import SampleRandom

_BISECTION_STEPS = 40


def _flat_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).flatten(1).sum(dim=1)


def project_onto_hyperplane_in_box(
    w: torch.Tensor, c: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, norm: Norm
) -> torch.Tensor:
    """The smallest ``d`` (in ``norm``) with ``<w, d> = c`` and ``lower <= d <= upper`` (``lower <= 0 <= upper``).

    The minimiser is ``clip(lam * v, lower, upper)`` with ``v = sign(w)`` for linf and ``v = w`` for l2
    (KKT conditions); ``<w, d>`` grows monotonically in ``lam``, so ``lam`` is found by bisection, a
    simpler route than the sorting algorithms of the paper. Unreachable ``c`` gives the box corner.
    """
    direction = (w.sign() if norm == "linf" else w) * per_sample(c.sign(), w)
    target = c.abs()
    reach = torch.maximum(lower.abs(), upper.abs()) / direction.abs().clamp(min=1e-12)
    low = torch.zeros_like(target)
    high = reach.flatten(1).amax(dim=1)
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2
        d = torch.minimum(torch.maximum(per_sample(middle, w) * direction, lower), upper)
        short = _flat_dot(w, d).abs() < target
        low = torch.where(short, middle, low)
        high = torch.where(short, high, middle)
    return torch.minimum(torch.maximum(per_sample(high, w) * direction, lower), upper)


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
        x_best = x.clone()
        best_size = torch.full((x.shape[0],), float("inf"), device=x.device, dtype=x.dtype)
        for _ in range(self.steps):
            x_next = self._step(model, x, x_cur, y, target)
            adversarial = predict(model, x_next).argmax(dim=1) != y
            size = perturbation_norm(x, x_next, self.norm)
            better = adversarial & (size < best_size)
            x_best = where_samples(better, x_next, x_best)
            best_size = torch.where(better, size, best_size)
            pulled_back = (1 - self.backward_step) * x + self.backward_step * x_next
            x_cur = where_samples(adversarial, pulled_back, x_next)
        within = best_size <= self.eps * (1 + 1e-6)
        return RunResult(where_samples(within, x_best, x))
