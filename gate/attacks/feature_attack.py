"""The common interface of the tabular attacks, which search a constrained feature space (``FeatureThreat``)
instead of a norm ball on pixels, and may use gradients, scores or both."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from gate.attacks.base import Model, predict, sample_index
from gate.attacks.feature_space import FeatureThreat
from gate.tasks.classification import is_correct

LOG_FLOOR = 1e-30
"""Probabilities are turned into log-probabilities (``log(max(p, LOG_FLOOR))``) for margins."""


@dataclass(frozen=True)
class AttackModels:
    """What a tabular attack may query: the differentiable model (``None`` with the reason), and the
    deployed scores, which are probabilities for most scikit-learn and boosted-tree exports."""

    scores: Model
    gradient: Model | None = None
    no_gradient_reason: str | None = None
    scores_are_probabilities: bool = False

    def log_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Scores as logits or log-probabilities, whose differences are margins."""
        scores = predict(self.scores, x)
        return scores.clamp_min(LOG_FLOOR).log() if self.scores_are_probabilities else scores


@dataclass(frozen=True)
class FeatureOutcome:
    """What a tabular attack found per sample (``robust`` as the model it queried judged it), the query
    count of score-based stages, and which attack family ran, with the reason, in the report's words."""

    x_adv: torch.Tensor
    robust: torch.Tensor
    queries: torch.Tensor | None = None
    stages: list[str] = field(default_factory=list)
    rejected: torch.Tensor | None = None
    """Per sample: the attack met a misclassified candidate that broke the feature space, and dropped it."""
    rejected_reasons: torch.Tensor | None = None
    """The ``feature_space.REASONS`` bits of those candidates (0 where none was met)."""


def margin(log_scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``score of the label - best other score``: negative once the sample is misclassified."""
    own = log_scores.gather(1, y[:, None]).squeeze(1)
    others = log_scores.scatter(1, y[:, None], float("-inf"))
    return own - others.amax(dim=1)


class FeatureAttack(ABC):
    """An evasion attack on feature vectors under a ``FeatureThreat``.

    :meth:`perturb` attacks the samples the queried model classifies correctly and returns candidates
    that the threat's ``settle`` made concrete (rounded and repaired); only feasible misclassified points
    replace the clean input. Randomness is keyed by ``(seed, sample index, restart, step)``.
    """

    name: ClassVar[str]
    needs_gradients: ClassVar[bool]
    supports_targeted: ClassVar[bool] = False
    counts_queries: ClassVar[bool] = False

    def __init__(self, *, threat: FeatureThreat, seed: int = 0) -> None:
        self.threat = threat
        self.seed = int(seed)

    @property
    def norm(self) -> str:
        return self.threat.norm

    @property
    def eps(self) -> float:
        return self.threat.eps

    def __repr__(self) -> str:
        return f"{type(self).__name__}(norm={self.norm!r}, eps={self.eps} standardised)"

    def available(self, models: AttackModels) -> str | None:
        """Why this attack cannot run on ``models`` (no gradients), or None."""
        if self.needs_gradients and models.gradient is None:
            return models.no_gradient_reason or "the model has no differentiable version"
        return None

    def plan(self, models: AttackModels) -> list[str]:
        """The stages this attack runs on ``models``, in the report's words (known before it runs, so a
        resumed check that recomputes nothing reports them too)."""
        return [self.name]

    def judge(self, models: AttackModels, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Correct per sample, by the model this attack queries."""
        model = models.gradient if self.needs_gradients and models.gradient is not None else models.scores
        return is_correct(predict(model, x), y)

    def perturb(
        self, models: AttackModels, x: torch.Tensor, y: torch.Tensor, *, index: torch.Tensor | None = None
    ) -> FeatureOutcome:
        x, y = x.detach(), y.to(x.device)
        keys = sample_index(index, x)
        robust = self.judge(models, x, y)
        x_adv = x.clone()
        active = robust.nonzero().squeeze(1)
        queries = torch.zeros(len(x), dtype=torch.int64, device=x.device) if self.counts_queries else None
        rejected_reasons = torch.zeros(len(x), dtype=torch.int64, device=x.device)
        if active.numel():
            found, used, met = self._run(models, x[active], y[active], keys[active])
            misclassified = ~self.judge(models, found, y[active])
            ok, bits = self.threat.feasible(found, x[active])
            robust[active] = ~(misclassified & ok)  # an infeasible candidate is no success
            x_adv[active] = torch.where(ok[:, None], found, x[active])
            rejected_reasons[active] = met | torch.where(misclassified & ~ok, bits, torch.zeros_like(bits))
            if queries is not None and used is not None:
                queries[active] = used
        rejected = robust & (rejected_reasons != 0)
        rejected_reasons = torch.where(rejected, rejected_reasons, torch.zeros_like(rejected_reasons))
        return FeatureOutcome(x_adv, robust, queries, self.plan(models), rejected, rejected_reasons)

    @abstractmethod
    def _run(
        self, models: AttackModels, x: torch.Tensor, y: torch.Tensor, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """For every sample of ``x``: its best candidate (settled), the queries it used (or None), and the
        ``REASONS`` bits of misclassified candidates met on the way that broke the feature space."""


__all__ = ["AttackModels", "FeatureAttack", "FeatureOutcome", "margin"]
