"""The common interface of every attack, and the protocol they share: attack only what is still robust."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import ClassVar, TypeVar

import torch

from gate.attacks.threat import Norm, ThreatModel, l2_norm, per_sample
from gate.randomness.streams import SampleRandom
from gate.tasks.classification import is_correct

Model = Callable[[torch.Tensor], torch.Tensor]
"""A batch in the input range -> logits ``[N, classes]``; must already be in eval mode."""


@dataclass(frozen=True)
class AttackOutcome:
    """What an attack found for each sample.

    ``x_adv`` has the shape and device of ``x`` and lies inside the eps-ball and the bounds (up to float
    rounding, 1e-6). ``robust[i]`` is true when sample ``i`` was classified correctly on ``x`` and still
    is on ``x_adv``. ``queries`` counts model evaluations per sample for score-based attacks.
    """

    x_adv: torch.Tensor
    robust: torch.Tensor
    queries: torch.Tensor | None = None


@dataclass(frozen=True)
class RunResult:
    """One attack run on the still-robust samples: candidate points and, if counted, queries used."""

    x_adv: torch.Tensor
    queries: torch.Tensor | None = None


def predict(model: Model, x: torch.Tensor) -> torch.Tensor:
    """Logits without building a graph."""
    with torch.no_grad():
        return model(x)


def loss_and_grad(
    model: Model,
    x_adv: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample loss, logits and the gradient of the summed loss w.r.t. the input (one forward+backward).

    Only the input gets a gradient: ``torch.autograd.grad`` leaves the parameters' ``.grad`` untouched.
    """
    x_leaf = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x_leaf)
        loss = loss_fn(logits)
        # Ones as the output gradient: the gradient of the sum, without a sum and its backward.
        grad = input_gradient(loss, x_leaf, torch.ones_like(loss))
    return loss.detach(), logits.detach(), grad


def logits_and_grad(
    model: Model, x_adv: torch.Tensor, total_loss_fn: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the gradient of ``total_loss_fn(logits)`` (a scalar) w.r.t. the input.

    For attacks that step on the gradient alone: a loss summed inside the loss function (``reduction=
    "sum"``) saves a reduction and its backward per step over :func:`loss_and_grad`, which matters on a
    GPU where a small model's step costs a few dozen kernel launches.
    """
    x_leaf = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x_leaf)
        grad = input_gradient(total_loss_fn(logits), x_leaf)
    return logits.detach(), grad


def input_gradient(
    output: torch.Tensor, x_leaf: torch.Tensor, grad_outputs: torch.Tensor | None = None
) -> torch.Tensor:
    """The gradient of ``output`` w.r.t. ``x_leaf``; zeros where the output does not depend on the input
    differentiably (a ``detach()`` or an integer cast in the model). An attack then stands still, as it
    does on any zero gradient, and the adaptive escalation (gate/checks/adaptive.py) and model_sanity's
    ``disconnected_gradients`` take over, instead of autograd's error ending the check."""
    if not output.requires_grad:
        return torch.zeros_like(x_leaf)
    (grad,) = torch.autograd.grad(output, x_leaf, grad_outputs=grad_outputs, allow_unused=True)
    return torch.zeros_like(x_leaf) if grad is None else grad


class FiniteWatch:
    """A model wrapped so that each forward's logits and each input gradient are checked for NaN and inf,
    into one flag on the device that the caller reads once after the attack (no host sync per step; a
    step adds two small kernels).

    An attack on non-finite gradients measures nothing: ``torch.sign`` maps NaN to 0, so FGSM and PGD
    stand still and every point looks robust. Gradients are seen through a hook on the input tensor, so
    every way an attack differentiates (``loss_and_grad``, ``logits_and_grad``, an ensemble's stages) is
    covered without changing the attacks.
    """

    def __init__(self, model: Model, device: torch.device, on_call: Callable[[], None] | None = None) -> None:
        self.model = model
        self.finite = torch.ones((), dtype=torch.bool, device=device)
        self.on_call = on_call
        """Called on every forward (the progress bar's pulse: an attack step inside a long batch)."""

    def _gradient(self, grad: torch.Tensor) -> None:
        self.finite &= torch.isfinite(grad).all()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        self.finite &= torch.isfinite(logits).all()
        if self.on_call is not None:
            self.on_call()
        if x.requires_grad and torch.is_grad_enabled():
            x.register_hook(self._gradient)
        return logits


def sample_index(index: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """The identity of each sample for the random streams: ``index`` if given, else the batch position."""
    if index is None:
        return torch.arange(x.shape[0], device=x.device)
    if index.shape != (x.shape[0],):
        raise ValueError(f"index must have shape ({x.shape[0]},), got {tuple(index.shape)}")
    return index.to(device=x.device, dtype=torch.int64)


class Attack(ABC):
    """An evasion attack under a norm-ball threat model.

    Subclasses implement :meth:`_run` on the samples that are still robust; :meth:`perturb` owns the
    protocol (skip misclassified points, restarts and target classes only on still-robust points, a
    final projection and verification forward). Randomness is keyed by ``(seed, sample index, target,
    restart, step)``: pass ``index`` (e.g. the sample's position in the whole data set) and a sample
    gets the same noise whatever batch or shard it is evaluated in.
    """

    name: ClassVar[str]
    supports_targeted: ClassVar[bool] = True
    counts_queries: ClassVar[bool] = False
    needs_gradients: ClassVar[bool] = True
    """False for score-based attacks, which may be given a model without gradients (an ONNX session)."""

    def __init__(
        self,
        *,
        norm: Norm,
        eps: float,
        bounds: tuple[float, float] = (0.0, 1.0),
        steps: int,
        restarts: int = 1,
        seed: int = 0,
        targeted: bool = False,
        n_target_classes: int = 9,
    ) -> None:
        self.threat = ThreatModel(norm=norm, eps=float(eps), bounds=(float(bounds[0]), float(bounds[1])))
        if steps < 1 or restarts < 1:
            raise ValueError(f"steps and restarts must be >= 1, got steps={steps}, restarts={restarts}")
        if targeted and not self.supports_targeted:
            raise ValueError(f"{self.name} has no targeted version")
        if n_target_classes < 1:
            raise ValueError(f"n_target_classes must be >= 1, got {n_target_classes}")
        self.steps = int(steps)
        self.restarts = int(restarts)
        self.seed = int(seed)
        self.targeted = bool(targeted)
        self.n_target_classes = int(n_target_classes)

    @property
    def norm(self) -> Norm:
        return self.threat.norm

    @property
    def eps(self) -> float:
        return self.threat.eps

    @property
    def bounds(self) -> tuple[float, float]:
        return self.threat.bounds

    def __repr__(self) -> str:
        return f"{type(self).__name__}(norm={self.norm!r}, eps={self.eps}, steps={self.steps}, restarts={self.restarts})"

    @abstractmethod
    def _run(
        self,
        model: Model,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        rng: SampleRandom,
        restart: int,
    ) -> RunResult:
        """Attack every sample of ``x`` once; return candidates (projected again by the caller)."""

    def _target_ranks(self, n_classes: int) -> Iterator[int]:
        """0 for an untargeted attack; else 2, 3, ...: the rank of the target among the clean logits."""
        if not self.targeted:
            yield 0
            return
        yield from range(2, 2 + min(self.n_target_classes, n_classes - 1))

    def perturb(
        self, model: Model, x: torch.Tensor, y: torch.Tensor, *, index: torch.Tensor | None = None
    ) -> AttackOutcome:
        """Attack ``model`` on ``(x, y)``; ``index`` identifies the samples for the random streams."""
        x = x.detach()
        y = y.to(x.device)
        keys = sample_index(index, x)
        clean_logits = predict(model, x)
        robust = is_correct(clean_logits, y)
        x_adv = x.clone()
        queries = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device) if self.counts_queries else None
        for rank in self._target_ranks(clean_logits.shape[1]):
            for restart in range(self.restarts):
                active = robust.nonzero().squeeze(1)  # one host sync per restart, not per step
                if active.numel() == 0:
                    return AttackOutcome(x_adv, robust, queries)
                target = None
                if rank:
                    target = clean_logits[active].argsort(dim=1, descending=True)[:, rank - 1]
                rng = SampleRandom(keys[active], (self.seed, rank, restart))
                x_active, y_active = x[active], y[active]
                run = self._run(model, x_active, y_active, target, rng, restart)
                candidate = self.threat.project(run.x_adv.detach(), x_active)
                x_adv[active] = candidate
                robust[active] = is_correct(predict(model, candidate), y_active)
                if queries is not None and run.queries is not None:
                    queries[active] += run.queries
        return AttackOutcome(x_adv, robust, queries)


def rows_left(done: torch.Tensor) -> torch.Tensor | None:
    """Positions of the rows not ``done``, or ``None`` when no row is done and there is nothing to drop.

    The attacks' one host sync when they narrow their working batch: boolean-mask indexing would sync once
    per narrowed tensor, and an ``any()`` check once more.
    """
    rows = (~done).nonzero().squeeze(1)
    return None if rows.numel() == done.numel() else rows


def keep_rows(rows: torch.Tensor, *tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """Each tensor narrowed to ``rows`` (an index tensor from :func:`rows_left`; ``None`` stays ``None``):
    how the attacks drop points that no longer need work from their working batch, without a host sync."""
    return tuple(None if t is None else t.index_select(0, rows) for t in tensors)


_Rows = TypeVar("_Rows", bound="SampleRows")


class SampleRows:
    """Mixin for a dataclass whose fields are all per-sample tensors: :meth:`keep` narrows every field."""

    def keep(self: _Rows, rows: torch.Tensor) -> _Rows:
        return type(self)(*keep_rows(rows, *(getattr(self, f.name) for f in fields(self))))  # type: ignore[arg-type]


def where_samples(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample select: ``a[i]`` where ``mask[i]`` else ``b[i]``, without a host sync."""
    return torch.where(per_sample(mask, a), a, b)


__all__ = [
    "Attack", "AttackOutcome", "FiniteWatch", "Model", "RunResult", "l2_norm", "logits_and_grad", "loss_and_grad", "predict",
]  # fmt: skip
