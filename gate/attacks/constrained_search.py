"""A black-box evolutionary search in a constrained feature space, for models without gradients (tree
ensembles), in the spirit of MoEvA2 (Ghamizi et al. 2020, "Search-based adversarial testing and
improvement of constrained credit scoring systems"; Simonetto et al. 2022).

Per sample, a population of candidates inside the threat (random points of the box, its corners and
sparse changes of a few features) evolves by uniform crossover and mutation; every child is settled
(repaired and rounded to the feature types) and scored by the deployed model only. Fitness is the margin
of the label's log-score over the best other class plus a penalty for infeasibility; the best candidates
survive (elitism). A sample is done once a feasible misclassified candidate is found.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from gate.attacks.feature_attack import AttackModels, FeatureAttack, margin
from gate.attacks.feature_space import FeatureThreat
from gate.randomness.generators import sample_generators

INFEASIBLE_PENALTY = 1e6
MUTATION_RATE = 0.3  # share of the mutable features a mutation moves
MUTATION_SIZE = 0.5  # the mutation's standard deviation, in units of the budget
JUMP_RATE = 0.05  # share of features that jump to a random point of their box instead


class ConstrainedSearch(FeatureAttack):
    """The search with ``population`` candidates per sample and ``queries`` model queries per sample."""

    name: ClassVar[str] = "constrained-search"
    needs_gradients: ClassVar[bool] = False
    counts_queries: ClassVar[bool] = True

    def __init__(
        self, *, threat: FeatureThreat, seed: int = 0, queries: int = 2000, population: int = 20
    ) -> None:
        super().__init__(threat=threat, seed=seed)
        if queries < 1 or population < 4:
            raise ValueError(f"need population >= 4 and queries >= 1, got {population} and {queries}")
        self.queries = int(queries)
        # A budget below one population is spent on the initial candidates alone.
        self.population = max(4, min(int(population), self.queries))

    def _fitness(
        self, models: AttackModels, candidates: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fitness (lower is better) and success of ``candidates`` ``[N, P, F]`` for ``x`` ``[N, F]``, and
        per sample the reasons of misclassified candidates that broke the feature space."""
        count, size, features = candidates.shape
        flat = candidates.reshape(count * size, features)
        origin = x[:, None].expand(-1, size, -1).reshape(count * size, features)
        labels = y[:, None].expand(-1, size).reshape(-1)
        margins = margin(models.log_scores(flat), labels)
        ok, bits = self.threat.feasible(flat, origin)
        penalty = self.threat.space.penalty(flat) + (~ok).to(flat.dtype)
        fitness = torch.where(ok, margins, margins + INFEASIBLE_PENALTY * penalty)
        rejected = torch.where(~ok & (margins < 0), bits, torch.zeros_like(bits)).reshape(count, size)
        met = torch.zeros(count, dtype=torch.int64, device=flat.device)
        for column in range(size):
            met |= rejected[:, column]
        return fitness.reshape(count, size), (ok & (margins < 0)).reshape(count, size), met

    def _settle(self, candidates: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        count, size, features = candidates.shape
        origin = x[:, None].expand(-1, size, -1).reshape(count * size, features)
        return self.threat.settle(candidates.reshape(count * size, features), origin).reshape(
            candidates.shape
        )

    def _initial(self, x: torch.Tensor, rngs: list[torch.Generator]) -> torch.Tensor:
        threat = self.threat
        lower, upper = threat.limits(x)
        size, features = self.population, x.shape[1]
        draws = _draw(rngs, (size, 3 * features), x.device, x.dtype)
        uniform, corners, sparse = draws.split(features, dim=2)
        corners = (corners < 0.5).to(x.dtype)
        sparse = sparse < (2.0 / max(features, 1))
        box = lower[:, None] + uniform * (upper - lower)[:, None]
        vertex = lower[:, None] + corners * (upper - lower)[:, None]
        third = size // 3
        points = torch.where(sparse, box, x[:, None].expand_as(box)).clone()
        points[:, :third] = box[:, :third]
        points[:, third : 2 * third] = vertex[:, third : 2 * third]
        points[:, 0] = x  # the clean point competes too
        return self._project(points, x)

    def _project(self, candidates: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        count, size, features = candidates.shape
        origin = x[:, None].expand(-1, size, -1).reshape(count * size, features)
        return self.threat.project(candidates.reshape(count * size, features), origin).reshape(
            candidates.shape
        )

    def _children(
        self, parents: torch.Tensor, fitness: torch.Tensor, x: torch.Tensor, rngs: list[torch.Generator]
    ) -> torch.Tensor:
        count, size, features = parents.shape
        draws = _draw(rngs, (size, 4 + 4 * features), x.device, x.dtype)
        picks, mix, moves, jump_to, jumps = draws.split([4, features, features, features, features], dim=2)
        normal = _draw(rngs, (size, features), x.device, x.dtype, normal=True)
        # Binary tournaments pick two parents per child; uniform crossover mixes their features.
        picks = (picks * size).long().clamp_(max=size - 1)
        rows = torch.arange(count, device=x.device)[:, None]
        first = torch.where(
            fitness[rows, picks[..., 0]] <= fitness[rows, picks[..., 1]], picks[..., 0], picks[..., 1]
        )
        second = torch.where(
            fitness[rows, picks[..., 2]] <= fitness[rows, picks[..., 3]], picks[..., 2], picks[..., 3]
        )
        child = torch.where(mix < 0.5, parents[rows, first], parents[rows, second])
        space = self.threat.space.on(x.device)
        unit = space.scale * (
            self.threat.eps if self.threat.norm == "linf" else self.threat.eps / features**0.5
        )
        noise = normal * MUTATION_SIZE * unit
        child = child + torch.where(moves < MUTATION_RATE, noise, torch.zeros_like(noise))
        lower, upper = self.threat.limits(x)
        jump = lower[:, None] + jump_to * (upper - lower)[:, None]
        return self._project(torch.where(jumps < JUMP_RATE, jump, child), x)

    def _run(
        self, models: AttackModels, x: torch.Tensor, y: torch.Tensor, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # One generator per sample: its draws depend on nothing but the sample and its own progress, so
        # the result does not depend on the batch (and drawing per sample is cheap next to hashing).
        rngs = sample_generators(self.seed, keys, stream="constrained-search")
        population = self._settle(self._initial(x, rngs), x)
        fitness, success, met = self._fitness(models, population, x, y)
        used = torch.full((len(x),), self.population, dtype=torch.int64, device=x.device)
        done = success.any(dim=1)
        generations = self.queries // self.population - 1
        for _ in range(generations):
            todo = (~done).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            todo_rngs = [rngs[i] for i in todo.tolist()]
            children = self._settle(
                self._children(population[todo], fitness[todo], x[todo], todo_rngs), x[todo]
            )
            child_fitness, child_success, child_met = self._fitness(models, children, x[todo], y[todo])
            met[todo] |= child_met
            used[todo] += self.population
            merged = torch.cat([population[todo], children], dim=1)
            merged_fitness = torch.cat([fitness[todo], child_fitness], dim=1)
            merged_success = torch.cat([success[todo], child_success], dim=1)
            order = merged_fitness.argsort(dim=1)[:, : self.population]
            rows = torch.arange(len(todo), device=x.device)[:, None]
            population[todo] = merged[rows, order]
            fitness[todo] = merged_fitness[rows, order]
            success[todo] = merged_success[rows, order]
            done[todo] = success[todo].any(dim=1)
        # The best candidate of each sample: a success where there is one (fitness orders them first).
        best = fitness.argmin(dim=1)
        rows = torch.arange(len(x), device=x.device)
        return population[rows, best], used, met


def _draw(
    rngs: list[torch.Generator],
    shape: tuple[int, ...],
    device: torch.device,
    dtype: torch.dtype,
    *,
    normal: bool = False,
) -> torch.Tensor:
    """``[len(rngs), *shape]`` uniform (or standard normal) draws, one sample's generator per row (on the
    CPU, so CPU and CUDA runs agree)."""
    draw = torch.randn if normal else torch.rand
    return torch.stack([draw(shape, generator=rng) for rng in rngs]).to(device=device, dtype=dtype)


__all__ = ["ConstrainedSearch"]
