"""Constrained PGD for tabular models (CPGD, Simonetto et al. 2022, "A Unified Framework for Adversarial
Attack and Defense in Constrained Feature Space"): gradient steps in standardised feature units on the
cross-entropy minus a penalty for broken constraints, projected onto the ranges, the budget and
immutability, with equality-determined features recomputed; every iterate is settled (rounded to the
feature types) and kept only if it is feasible and misclassified."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch.nn import functional

from gate.attacks.feature_attack import AttackModels, FeatureAttack
from gate.attacks.feature_space import FeatureThreat
from gate.randomness.streams import SampleRandom
from gate.tasks.classification import is_correct

MOMENTUM = 0.75  # APGD's: a step keeps a quarter of the previous one's direction
STEP_DECAY_AT = (0.4, 0.7, 0.9)  # fractions of the steps where the step size halves
PENALTY_WEIGHT = 1.0
_TINY = 1e-12


class ConstrainedPGD(FeatureAttack):
    """CPGD with momentum and a halving step size (start ``2 * eps`` standardised), ``restarts`` runs:
    the first from the clean point, the others from random points of the threat."""

    name: ClassVar[str] = "cpgd"
    needs_gradients: ClassVar[bool] = True

    def __init__(self, *, threat: FeatureThreat, seed: int = 0, steps: int = 100, restarts: int = 1) -> None:
        super().__init__(threat=threat, seed=seed)
        if steps < 1 or restarts < 1:
            raise ValueError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
        self.steps = int(steps)
        self.restarts = int(restarts)

    def _run(
        self, models: AttackModels, x: torch.Tensor, y: torch.Tensor, keys: torch.Tensor
    ) -> tuple[torch.Tensor, None, torch.Tensor]:
        model = models.gradient
        if model is None:
            raise ValueError(f"{self.name} needs a differentiable model: {models.no_gradient_reason}")
        best = x.clone()
        found = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        met = torch.zeros(len(x), dtype=torch.int64, device=x.device)
        for restart in range(self.restarts):
            todo = (~found).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            rng = SampleRandom(keys[todo], (self.seed, 0xC96D, restart))
            hits, points, bits = self._climb(model, x[todo], y[todo], rng, restart)
            best[todo] = points
            found[todo[hits]] = True
            met[todo] |= bits
        return best, None, met

    def _climb(
        self, model, x: torch.Tensor, y: torch.Tensor, rng: SampleRandom, restart: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One run: which samples it broke feasibly, their points (else the last settled iterate), and
        the reasons of misclassified candidates it met that broke the feature space."""
        threat, space = self.threat, self.threat.space.on(x.device)
        scale, mutable = space.scale, space.mutable
        x_adv = x.clone() if restart == 0 else threat.random_start(x, rng.uniform(0, x.shape[1:], x.dtype))
        x_adv = threat.shrink(space.repair(x_adv), x)
        previous = x_adv.clone()
        hit = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        met = torch.zeros(len(x), dtype=torch.int64, device=x.device)
        point = x_adv.clone()
        step = 2.0 * threat.eps
        decay_steps = {max(1, int(self.steps * f)) for f in STEP_DECAY_AT}
        for t in range(self.steps):
            if t in decay_steps:
                step /= 2
            leaf = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                # Through the repair, so that the gradient reaches the features a determined one depends on.
                repaired = space.repair(leaf)
                logits = model(repaired)
                loss = functional.cross_entropy(logits, y, reduction="sum")
                loss = loss - PENALTY_WEIGHT * space.penalty(repaired).sum()
                (grad,) = torch.autograd.grad(loss, leaf)
            grad = torch.where(mutable, grad * scale, torch.zeros_like(grad))  # d loss / d standardised x
            if threat.norm == "linf":
                direction = grad.sign()
            else:
                direction = grad / (grad.norm(dim=1, keepdim=True) + _TINY)
            moved = threat.project(x_adv + step * direction * scale, x)
            if t:
                moved = threat.project(
                    x_adv + MOMENTUM * (moved - x_adv) + (1 - MOMENTUM) * (x_adv - previous), x
                )
            previous, x_adv = x_adv, threat.shrink(space.repair(moved), x)
            candidate = threat.settle(x_adv, x)
            with torch.no_grad():
                broken = ~is_correct(model(candidate), y)
            ok, bits = threat.feasible(candidate, x)
            met |= torch.where(broken & ~ok, bits, torch.zeros_like(bits))
            new = broken & ok & ~hit
            point = torch.where((new | ~hit)[:, None], candidate, point)
            hit |= new
        return hit, point, met


__all__ = ["ConstrainedPGD"]
