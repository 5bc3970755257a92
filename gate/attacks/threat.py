"""The threat model shared by every attack: a norm ball of radius ``eps`` intersected with the input bounds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from gate.randomness.streams import SampleRandom

Norm = Literal["linf", "l2"]
NORMS: tuple[Norm, ...] = ("linf", "l2")
_TINY = 1e-12


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a ``[N]`` tensor so it broadcasts against ``like`` (``[N, ...]``)."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def l2_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-sample Euclidean norm of a ``[N, ...]`` tensor."""
    return t.flatten(1).norm(p=2, dim=1)


def perturbation_norm(x: torch.Tensor, x_adv: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Per-sample size ``||x_adv - x||`` in the attack's norm, as a ``[N]`` tensor."""
    delta = (x_adv - x).flatten(1)
    if norm == "linf":
        return delta.abs().amax(dim=1) if delta.shape[1] else delta.new_zeros(delta.shape[0])
    if norm == "l2":
        return delta.norm(p=2, dim=1)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


@dataclass(frozen=True)
class ThreatModel:
    """Where an adversary may move: ``||x_adv - x||_norm <= eps`` and ``bounds[0] <= x_adv <= bounds[1]``."""

    norm: Norm
    eps: float
    bounds: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if not self.eps >= 0:
            raise ValueError(f"eps must be a non-negative number, got {self.eps!r}")
        low, high = self.bounds
        if not low < high:
            raise ValueError(f"bounds must be (low, high) with low < high, got {self.bounds!r}")

    def box(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Element-wise limits; for linf they are the whole feasible set, for l2 just the bounds."""
        low, high = self.bounds
        if self.norm == "linf":
            return (x - self.eps).clamp_(min=low), (x + self.eps).clamp_(max=high)
        return torch.full_like(x, low), torch.full_like(x, high)

    def projector(self, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """``project(., x)`` for a fixed ``x``, its limits computed once: an attack projects every step,
        and for linf the projection is then one element-wise operation instead of five."""
        if self.norm != "linf":
            return lambda x_adv: self.project(x_adv, x)
        lower, upper = self.box(x)
        return lambda x_adv: torch.clamp(x_adv, lower, upper)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The point of the feasible set for ``x`` nearest to ``x_adv`` (exact for linf; for l2 the ball
        projection followed by clipping, which stays in the ball because clipping only shrinks ``|delta|``)."""
        low, high = self.bounds
        if self.norm == "linf":
            return torch.minimum(torch.maximum(x_adv, x - self.eps), x + self.eps).clamp_(low, high)
        delta = x_adv - x
        scale = (self.eps / (l2_norm(delta) + _TINY)).clamp_(max=1.0)
        return (x + delta * per_sample(scale, delta)).clamp_(low, high)

    def steepest_direction(self, grad: torch.Tensor) -> torch.Tensor:
        """The unit-norm direction of steepest ascent: ``sign(g)`` for linf, ``g / ||g||_2`` for l2."""
        if self.norm == "linf":
            return grad.sign()
        return grad / per_sample(l2_norm(grad) + _TINY, grad)

    def random_start(
        self, x: torch.Tensor, rng: SampleRandom, tag: int, *, l2_inside: bool = True
    ) -> torch.Tensor:
        """A random feasible point: uniform in the linf cube; for l2 a random direction at a radius drawn
        uniformly in ``[0, eps]`` (``l2_inside``), or on the sphere of radius ``eps`` (APGD's start)."""
        shape = x.shape[1:]
        if self.norm == "linf":
            # |noise| <= eps and rounding is monotonic, so x + noise is inside the ball: only the bounds clip.
            low, high = self.bounds
            return (x + (rng.uniform(tag, shape, x.dtype) * 2 - 1) * self.eps).clamp_(low, high)
        noise = rng.normal(tag, shape, x.dtype)
        radius = rng.uniform(tag + 7919, (1,), x.dtype)[:, 0] if l2_inside else 1.0
        noise = noise * per_sample(self.eps * radius / (l2_norm(noise) + _TINY), noise)
        return self.project(x + noise, x)
