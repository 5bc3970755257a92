"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks"): PGD with momentum and a step size halved at checkpoints when progress
stalls, so it needs no step-size tuning. APGD-CE uses cross-entropy; APGD-T the targeted DLR loss."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from gate.attacks import losses
from gate.attacks.base import (
    Attack,
    Model,
    RunResult,
    SampleRows,
    keep_rows,
    loss_and_grad,
    rows_left,
    where_samples,
)
from gate.attacks.threat import Norm, per_sample
from gate.randomness.streams import SampleRandom
from gate.tasks.classification import is_correct

Loss = Literal["ce", "dlr"]
MOMENTUM = 0.75  # alpha in the paper
RHO = 0.75  # fraction of loss-increasing steps below which the step size is halved
_COMPACT_EVERY = 5  # steps between dropping points already misclassified (a host sync), besides checkpoints


def checkpoints(steps: int) -> list[int]:
    """Iterations at which the step size is reconsidered: ``w_j = ceil(p_j * steps)`` with ``p_0 = 0``,
    ``p_1 = 0.22`` and ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` (Croce & Hein 2020, sec. 3.2)."""
    fractions = [0.0, 0.22]
    while fractions[-1] < 1.0:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06))
    marks = sorted({math.ceil(p * steps - 1e-9) for p in fractions[1:] if p <= 1.0})
    return [mark for mark in marks if 0 < mark <= steps]


def compaction_steps(steps: int) -> frozenset[int]:
    """Iterations after which misclassified points leave the batch: every checkpoint and every
    ``_COMPACT_EVERY``-th step, before the last (each is a host sync)."""
    marks = set(checkpoints(steps)) | set(range(_COMPACT_EVERY, steps + 1, _COMPACT_EVERY))
    return frozenset(mark for mark in marks if mark < steps)


@dataclass
class _State(SampleRows):
    """The per-sample search state carried across iterations."""

    x_adv: torch.Tensor
    x_prev: torch.Tensor
    grad: torch.Tensor
    loss: torch.Tensor
    step: torch.Tensor
    x_best: torch.Tensor
    grad_best: torch.Tensor
    loss_best: torch.Tensor
    x_found: torch.Tensor
    found: torch.Tensor
    increases: torch.Tensor
    loss_best_at_checkpoint: torch.Tensor
    reduced_at_checkpoint: torch.Tensor


class APGD(Attack):
    """APGD on the CE or DLR loss, untargeted or targeted (APGD-T: one run per target class)."""

    name: ClassVar[str] = "apgd"

    def __init__(
        self,
        *,
        norm: Norm,
        eps: float,
        bounds: tuple[float, float] = (0.0, 1.0),
        steps: int = 100,
        restarts: int = 1,
        seed: int = 0,
        loss: Loss = "ce",
        targeted: bool = False,
        n_target_classes: int = 9,
    ) -> None:
        super().__init__(
            norm=norm, eps=eps, bounds=bounds, steps=steps, restarts=restarts, seed=seed,
            targeted=targeted, n_target_classes=n_target_classes,
        )  # fmt: skip
        if loss not in ("ce", "dlr"):
            raise ValueError(f"loss must be 'ce' or 'dlr', got {loss!r}")
        self.loss = loss
        self.checkpoints = checkpoints(self.steps)
        self.compactions = compaction_steps(self.steps)

    def _loss_fn(self, y: torch.Tensor, target: torch.Tensor | None):
        loss_fn = losses.cross_entropy if self.loss == "ce" else losses.dlr
        return lambda logits: loss_fn(logits, y, target)

    def _run(
        self,
        model: Model,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        rng: SampleRandom,
        restart: int,
    ) -> RunResult:
        loss_fn = self._loss_fn(y, target)
        state = self._initial_state(model, x, y, rng, loss_fn)
        x_out = x.clone()
        ids = torch.arange(x.shape[0], device=x.device)
        project = self.threat.projector(x)
        previous_mark = 0
        for iteration in range(1, self.steps + 1):
            self._step(model, x, y, state, loss_fn, 1.0 if iteration == 1 else MOMENTUM, project)
            if iteration in self.checkpoints:
                self._checkpoint(state, interval=iteration - previous_mark)
                previous_mark = iteration
            if iteration in self.compactions:
                # A point misclassified once keeps an adversarial point whatever follows, so it leaves
                # the batch within a few steps, not at the next checkpoint (22 steps into a run of 100):
                # that is most of the work on a batch that breaks early. One host sync each time.
                rows = rows_left(state.found)
                if rows is not None:
                    x_out.index_copy_(0, ids, where_samples(state.found, state.x_found, state.x_best))
                    ids, x, y, target = keep_rows(rows, ids, x, y, target)
                    state = state.keep(rows)
                    if ids.numel() == 0:
                        return RunResult(x_out)
                    loss_fn = self._loss_fn(y, target)
                    project = self.threat.projector(x)
        x_out.index_copy_(0, ids, where_samples(state.found, state.x_found, state.x_best))
        return RunResult(x_out)

    def _initial_state(
        self, model: Model, x: torch.Tensor, y: torch.Tensor, rng: SampleRandom, loss_fn
    ) -> _State:
        x_adv = self.threat.random_start(x, rng, tag=0, l2_inside=False)
        loss, logits, grad = loss_and_grad(model, x_adv, loss_fn)
        found = ~is_correct(logits, y)
        return _State(
            x_adv=x_adv, x_prev=x_adv.clone(), grad=grad, loss=loss,
            step=torch.full_like(loss, 2.0 * self.eps),
            x_best=x_adv.clone(), grad_best=grad.clone(), loss_best=loss.clone(),
            x_found=x_adv.clone(), found=found,
            increases=torch.zeros_like(loss), loss_best_at_checkpoint=loss.clone(),
            reduced_at_checkpoint=torch.zeros_like(found),
        )  # fmt: skip

    def _step(
        self,
        model: Model,
        x: torch.Tensor,
        y: torch.Tensor,
        state: _State,
        loss_fn,
        momentum: float,
        project: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        """One momentum step (paper eq. 2), then bookkeeping of the best and of the latest adversarial point."""
        step, direction = per_sample(state.step, x), self.threat.steepest_direction(state.grad)
        # For linf the direction is +-1, so the product is exact and one addcmul gives x + step * direction
        # bit for bit; for l2 the fused rounding would differ, and a seed's results must not change.
        z = project(
            torch.addcmul(state.x_adv, step, direction)
            if self.norm == "linf"
            else state.x_adv + step * direction
        )
        # x + m (z - x) + (1 - m) (x - x_prev), as one interpolation between 2x - x_prev and z.
        moved = torch.lerp(state.x_adv * 2 - state.x_prev, z, momentum)
        state.x_prev = state.x_adv
        state.x_adv = project(moved)
        loss, logits, grad = loss_and_grad(model, state.x_adv, loss_fn)
        misclassified = ~is_correct(logits, y)
        state.x_found = where_samples(misclassified, state.x_adv, state.x_found)  # the latest adversarial
        state.found |= misclassified
        state.increases += loss > state.loss
        state.loss = loss
        state.grad = grad
        improved = loss > state.loss_best
        state.x_best = where_samples(improved, state.x_adv, state.x_best)
        state.grad_best = where_samples(improved, grad, state.grad_best)
        state.loss_best = torch.where(improved, loss, state.loss_best)

    def _checkpoint(self, state: _State, interval: int) -> None:
        """Halve the step and restart from the best point where progress stalled (paper conditions 1, 2)."""
        too_few_increases = state.increases < RHO * interval
        no_progress = ~state.reduced_at_checkpoint & (state.loss_best <= state.loss_best_at_checkpoint)
        reduce = too_few_increases | no_progress
        state.step = torch.where(reduce, state.step / 2.0, state.step)
        state.x_adv = where_samples(reduce, state.x_best, state.x_adv)
        state.x_prev = where_samples(reduce, state.x_best, state.x_prev)
        state.grad = where_samples(reduce, state.grad_best, state.grad)
        state.reduced_at_checkpoint = reduce
        state.loss_best_at_checkpoint = state.loss_best.clone()
        state.increases.zero_()


class APGDCE(APGD):
    """APGD on cross-entropy, untargeted: the first stage of AutoAttack."""

    name: ClassVar[str] = "apgd-ce"
    supports_targeted: ClassVar[bool] = False

    def __init__(
        self,
        *,
        norm: Norm,
        eps: float,
        bounds: tuple[float, float] = (0.0, 1.0),
        steps: int = 100,
        restarts: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(
            norm=norm, eps=eps, bounds=bounds, steps=steps, restarts=restarts, seed=seed, loss="ce"
        )


class APGDT(APGD):
    """APGD-T: targeted DLR loss, one run per target class (the 2nd..10th most likely clean classes)."""

    name: ClassVar[str] = "apgd-dlr"

    def __init__(
        self,
        *,
        norm: Norm,
        eps: float,
        bounds: tuple[float, float] = (0.0, 1.0),
        steps: int = 100,
        restarts: int = 1,
        seed: int = 0,
        n_target_classes: int = 9,
    ) -> None:
        super().__init__(
            norm=norm, eps=eps, bounds=bounds, steps=steps, restarts=restarts, seed=seed,
            loss="dlr", targeted=True, n_target_classes=n_target_classes,
        )  # fmt: skip
