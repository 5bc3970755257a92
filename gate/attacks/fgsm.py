"""The fast gradient sign method (Goodfellow et al. 2015, "Explaining and Harnessing Adversarial
Examples") and its L2 analogue, the fast gradient method: one step of size ``eps`` along the gradient."""

from __future__ import annotations

from typing import ClassVar

import torch

from gate.attacks import losses
from gate.attacks.base import Attack, Model, RunResult, loss_and_grad
from gate.attacks.threat import Norm
from gate.randomness.streams import SampleRandom


class FGSM(Attack):
    """One steepest-ascent step of length ``eps`` on the cross-entropy; deterministic, so one restart."""

    name: ClassVar[str] = "fgsm"

    def __init__(
        self,
        *,
        norm: Norm,
        eps: float,
        bounds: tuple[float, float] = (0.0, 1.0),
        steps: int = 1,
        restarts: int = 1,
        seed: int = 0,
        targeted: bool = False,
        n_target_classes: int = 9,
    ) -> None:
        if steps != 1 or restarts != 1:
            raise ValueError("FGSM takes exactly one step and one restart; use 'pgd' for more")
        super().__init__(
            norm=norm, eps=eps, bounds=bounds, steps=1, restarts=1, seed=seed,
            targeted=targeted, n_target_classes=n_target_classes,
        )  # fmt: skip

    def _run(
        self,
        model: Model,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        rng: SampleRandom,
        restart: int,
    ) -> RunResult:
        _, _, grad = loss_and_grad(model, x, lambda z: losses.cross_entropy(z, y, target))
        return RunResult(x + self.eps * self.threat.steepest_direction(grad))
