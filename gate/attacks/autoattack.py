"""AutoAttack, standard version (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with
an ensemble of diverse parameter-free attacks"): APGD-CE, APGD-T, FAB-T and Square in turn, each on the
points the previous stages left robust; a point counts as robust only if it survives all four."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from gate.attacks.apgd import APGDCE, APGDT
from gate.attacks.base import Attack, AttackOutcome, Model, RunResult, predict, sample_index
from gate.attacks.fab import FAB
from gate.attacks.square import Square
from gate.attacks.threat import Norm
from gate.randomness.streams import SampleRandom
from gate.tasks.classification import is_correct

NOT_BROKEN = -1


@dataclass(frozen=True)
class AutoAttackOutcome(AttackOutcome):
    """An :class:`AttackOutcome` that also says which stage broke each point.

    ``broken_by[i]`` indexes ``stages`` (stage 0, ``"clean"``, means misclassified without attack), or
    is ``NOT_BROKEN`` (-1) for robust points.
    """

    broken_by: torch.Tensor | None = None
    stages: tuple[str, ...] = ()

    def broken_by_names(self) -> list[str | None]:
        """``broken_by`` as stage names (``None`` for robust points); copies to the host once."""
        assert self.broken_by is not None
        return [self.stages[code] if code >= 0 else None for code in self.broken_by.tolist()]


class AutoAttack(Attack):
    """The standard AutoAttack ensemble; ``steps`` is the iteration budget of APGD and FAB (100 in the
    paper), ``square_queries`` the query budget of Square (5000)."""

    name: ClassVar[str] = "autoattack"
    supports_targeted: ClassVar[bool] = False
    counts_queries: ClassVar[bool] = True

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
        square_queries: int = 5000,
    ) -> None:
        super().__init__(norm=norm, eps=eps, bounds=bounds, steps=steps, restarts=restarts, seed=seed)
        common = {"norm": norm, "eps": eps, "bounds": bounds, "restarts": restarts, "seed": seed}
        self.stages: tuple[Attack, ...] = (
            APGDCE(steps=steps, **common),
            APGDT(steps=steps, n_target_classes=n_target_classes, **common),
            FAB(steps=steps, targeted=True, n_target_classes=n_target_classes, **common),
            Square(steps=square_queries, **common),
        )
        self.stage_names = ("clean", "apgd-ce", "apgd-t", "fab-t", "square")

    def _run(self, model, x, y, target, rng: SampleRandom, restart: int) -> RunResult:  # pragma: no cover
        raise TypeError("AutoAttack composes whole attacks in perturb(); its _run is never called")

    def perturb(
        self, model: Model, x: torch.Tensor, y: torch.Tensor, *, index: torch.Tensor | None = None
    ) -> AutoAttackOutcome:
        """Run the four stages, each only on the points still robust; keep each point's first break."""
        x = x.detach()
        y = y.to(x.device)
        keys = sample_index(index, x)
        robust = is_correct(predict(model, x), y)
        broken_by = torch.where(robust, NOT_BROKEN, 0)
        x_adv = x.clone()
        queries = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
        for code, stage in enumerate(self.stages, start=1):
            active = robust.nonzero().squeeze(1)
            if active.numel() == 0:
                break
            outcome = stage.perturb(model, x[active], y[active], index=keys[active])
            x_adv[active] = outcome.x_adv
            broken = ~outcome.robust
            broken_by[active] = torch.where(broken, code, broken_by[active])
            robust[active] = outcome.robust
            if outcome.queries is not None:
                queries[active] += outcome.queries
        return AutoAttackOutcome(x_adv, robust, queries, broken_by=broken_by, stages=self.stage_names)
