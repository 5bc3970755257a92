"""Tiny analytic models and data shared by the explain tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

SHAPE = (1, 8, 8)
CLASSES = 3


class LinearModel(nn.Module):
    """``logits = W x + b``: every attribution method has a closed form here."""

    def __init__(self, shape: tuple[int, int, int] = SHAPE, classes: int = CLASSES, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        features = int(np.prod(shape))
        self.linear = nn.Linear(features, classes)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn((classes, features), generator=generator))
            self.linear.bias.copy_(torch.randn(classes, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))

    def weight_of(self, target: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        return self.linear.weight.detach()[target].view(len(target), *shape[1:])


class SmoothNet(nn.Module):
    """A small smooth nonlinear CNN (softplus), so path integrals converge quickly."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.head = nn.Linear(4 * 8 * 8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(nn.functional.softplus(self.conv(x)).flatten(1))


def numpy_score_fn(model: nn.Module):
    """A score function that is not a torch module: NumPy in the middle, NumPy out (like ONNX Runtime)."""
    weight = model.linear.weight.detach().numpy().astype(np.float64)
    bias = model.linear.bias.detach().numpy().astype(np.float64)

    def score(batch: torch.Tensor) -> np.ndarray:
        flat = batch.detach().cpu().numpy().reshape(len(batch), -1).astype(np.float64)
        return (flat @ weight.T + bias).astype(np.float32)

    return score


def random_batch(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *SHAPE), generator=generator)
    target = torch.randint(0, CLASSES, (n,), generator=generator)
    return x, target


def breast_cancer(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's breast cancer data (569 x 30), min-max scaled to [0, 1]: ``(x_train, y_train, x_test,
    y_test)`` with 400 training rows in a seeded random order."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.min(0)) / (x.max(0) - x.min(0))).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[:400], order[400:]
    as_tensors = (torch.from_numpy(x[train]), torch.from_numpy(y[train]).long())
    return (*as_tensors, torch.from_numpy(x[test]), torch.from_numpy(y[test]).long())


def train_tabular_mlp(
    x: torch.Tensor, y: torch.Tensor, *, ignore: int | None = None, seed: int = 0, hidden: int = 32
) -> nn.Sequential:
    """A ReLU MLP ``F -> hidden -> 2`` trained by full-batch Adam (200 steps, under a second).

    With ``ignore=k`` the first layer's weights on feature ``k`` are zero and stay zero: the model cannot
    see that feature, so every faithful attribution of it is 0.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, 2))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        if ignore is not None:
            model[0].weight.grad[:, ignore] = 0
        optimiser.step()
        if ignore is not None:
            with torch.no_grad():
                model[0].weight[:, ignore] = 0
    return model.eval()
