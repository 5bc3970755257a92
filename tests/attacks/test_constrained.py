"""The tabular attacks: CPGD, the black-box constrained search and their ensemble, on models whose
answers are known: they break what a feasible change can break, and nothing that only an infeasible
change (an immutable feature, a broken constraint) could."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gate.attacks.constrained_auto import ConstrainedAuto
from gate.attacks.constrained_pgd import ConstrainedPGD
from gate.attacks.constrained_search import ConstrainedSearch
from gate.attacks.feature_attack import AttackModels, margin
from gate.attacks.feature_space import FeatureThreat, build_feature_space
from gate.policy.features import FeatureSchema

NAMES = ("age", "a", "b", "total")


def _space(schema: FeatureSchema | None):
    return build_feature_space(
        schema, NAMES, low=np.array([0.0, 0, 0, 0]), high=np.array([100.0, 10, 10, 20]),
        std=np.ones(4), input_range=None, source="t",
    )  # fmt: skip


class Linear(nn.Module):
    """Class 1 when ``weights · x > threshold``: logits ``[0, weights · x - threshold]``."""

    def __init__(self, weights: list[float], threshold: float) -> None:
        super().__init__()
        self.weights = torch.tensor(weights)
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x @ self.weights - self.threshold
        return torch.stack([torch.zeros_like(score), score], dim=1)


def _data(count: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(count, generator=generator) * 4 + 3
    b = torch.rand(count, generator=generator) * 4 + 3
    age = (torch.rand(count, generator=generator) * 50 + 20).round()
    return torch.stack([age, a, b, a + b], dim=1), torch.zeros(count, dtype=torch.long)


def _attacks(threat: FeatureThreat):
    return [
        ConstrainedPGD(threat=threat, steps=30),
        ConstrainedSearch(threat=threat, queries=400),
        ConstrainedAuto(threat=threat, steps=30, queries=400),
    ]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_a_model_only_an_immutable_feature_can_flip_is_never_broken(index: int) -> None:
    x, y = _data()
    model = Linear([1.0, 0.0, 0.0, 0.0], 70.5)  # only age decides; every sample is class 0 (age < 70.5)
    models = AttackModels(scores=model, gradient=model)
    free = _attacks(FeatureThreat(_space(None), "linf", 60.0))[index]
    assert (~free.perturb(models, x, y).robust).sum() > 10  # with age mutable it is easy
    schema = FeatureSchema(columns=[{"name": "age", "mutable": False}])
    bound = _attacks(FeatureThreat(_space(schema), "linf", 60.0))[index]
    outcome = bound.perturb(models, x, y)
    assert outcome.robust.all() and torch.equal(outcome.x_adv[:, 0], x[:, 0])


@pytest.mark.parametrize("index", [0, 1, 2])
def test_examples_satisfy_a_determined_feature_and_reach_the_known_boundary(index: int) -> None:
    x, y = _data()
    model = Linear([0.0, 0.0, 0.0, 1.0], 12.0)  # class 1 once total > 12
    schema = FeatureSchema(columns=[{"name": "age", "mutable": False}], constraints=["total == a + b"])
    eps = 1.0  # a and b may each move by 1 (std 1): total by at most 2, and total itself by at most 1
    threat = FeatureThreat(_space(schema), "linf", eps)
    outcome = _attacks(threat)[index].perturb(AttackModels(scores=model, gradient=model), x, y)
    ok, _ = threat.feasible(outcome.x_adv, x)
    assert ok.all()
    assert torch.allclose(outcome.x_adv[:, 3], outcome.x_adv[:, 1] + outcome.x_adv[:, 2])
    # The repair makes total follow a + b, and total may move by eps only: breakable iff total > 11.
    breakable = x[:, 3] + eps > 12.0 + 1e-4
    assert torch.equal(~outcome.robust, breakable)


def test_the_search_breaks_a_model_without_gradients() -> None:
    x, _ = _data()

    def steps(z: torch.Tensor) -> torch.Tensor:  # a stump on a: probabilities, no gradient anywhere
        above = (z[:, 1] > 6.0).float()
        return torch.stack([1 - above, above], dim=1)

    labels = (x[:, 1] > 6.0).long()
    threat = FeatureThreat(_space(None), "linf", 0.5)
    models = AttackModels(scores=steps, scores_are_probabilities=True)
    auto = ConstrainedAuto(threat=threat, steps=10, queries=300)
    assert auto.gradient_stage.available(models) is not None
    outcome = auto.perturb(models, x, labels)
    near = (x[:, 1] - 6.0).abs() < 0.5 - 1e-4
    assert torch.equal(~outcome.robust, near)
    assert "cpgd skipped" in outcome.stages[0] and outcome.queries is not None
    assert (outcome.queries[~near] == 300).all() and (outcome.queries[near] < 300).all()


def test_results_do_not_depend_on_the_batch() -> None:
    x, y = _data()
    model = Linear([0.0, 0.5, 0.5, 0.2], 9.0)
    schema = FeatureSchema(constraints=["total == a + b"])
    threat = FeatureThreat(_space(schema), "l2", 1.0)
    attack = ConstrainedSearch(threat=threat, queries=200)
    models = AttackModels(scores=model)
    index = torch.arange(100, 100 + len(x))
    whole = attack.perturb(models, x, y, index=index)
    halves = [
        attack.perturb(models, x[part], y[part], index=index[part])
        for part in (slice(0, 17), slice(17, None))
    ]
    assert torch.equal(whole.x_adv, torch.cat([h.x_adv for h in halves]))
    assert torch.equal(whole.robust, torch.cat([h.robust for h in halves]))


def test_margins_use_log_probabilities() -> None:
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8]]).log()
    assert torch.allclose(
        margin(scores, torch.tensor([0, 0])), torch.tensor([np.log(9), np.log(0.25)]).float()
    )
