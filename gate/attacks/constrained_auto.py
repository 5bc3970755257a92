"""The tabular ensemble: constrained PGD where the model has gradients, then the black-box constrained
search on the samples still robust, so a sample counts as robust only if both fail; for a model without
gradients (a tree ensemble) the search alone, and the report says why."""

from __future__ import annotations

from typing import ClassVar

import torch

from gate.attacks.constrained_pgd import ConstrainedPGD
from gate.attacks.constrained_search import ConstrainedSearch
from gate.attacks.feature_attack import AttackModels, FeatureAttack
from gate.attacks.feature_space import FeatureThreat


class ConstrainedAuto(FeatureAttack):
    name: ClassVar[str] = "constrained"
    needs_gradients: ClassVar[bool] = (
        False  # it runs on any model: the gradient stage only where there is one
    )
    counts_queries: ClassVar[bool] = True

    def __init__(
        self,
        *,
        threat: FeatureThreat,
        seed: int = 0,
        steps: int = 100,
        restarts: int = 1,
        queries: int = 2000,
    ) -> None:
        super().__init__(threat=threat, seed=seed)
        self.gradient_stage = ConstrainedPGD(threat=threat, seed=seed, steps=steps, restarts=restarts)
        self.search_stage = ConstrainedSearch(threat=threat, seed=seed, queries=queries)
        self.stages = (self.gradient_stage, self.search_stage)

    def plan(self, models: AttackModels) -> list[str]:
        reason = self.gradient_stage.available(models)
        first = "cpgd (white-box: the model has gradients)" if reason is None else f"cpgd skipped: {reason}"
        return [first, "constrained-search (black-box: the deployed model's scores only)"]

    def _run(
        self, models: AttackModels, x: torch.Tensor, y: torch.Tensor, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """CPGD where there are gradients, then the search on what the deployed scores still call robust;
        :meth:`FeatureAttack.perturb` judges the combined candidates once more."""
        x_adv = x.clone()
        robust = torch.ones(len(x), dtype=torch.bool, device=x.device)  # perturb passes correct samples only
        met = torch.zeros(len(x), dtype=torch.int64, device=x.device)
        if self.gradient_stage.available(models) is None:
            first = self.gradient_stage.perturb(models, x, y, index=keys)
            broken = ~self.search_stage.judge(models, first.x_adv, y)
            x_adv = torch.where(broken[:, None], first.x_adv, x_adv)
            robust &= ~broken
            if first.rejected_reasons is not None:
                met |= first.rejected_reasons
        queries = torch.zeros(len(x), dtype=torch.int64, device=x.device)
        active = robust.nonzero().squeeze(1)
        if active.numel():
            second = self.search_stage.perturb(models, x[active], y[active], index=keys[active])
            x_adv[active] = second.x_adv
            if second.queries is not None:
                queries[active] = second.queries
            if second.rejected_reasons is not None:
                met[active] |= second.rejected_reasons
        return x_adv, queries, met


__all__ = ["ConstrainedAuto"]
