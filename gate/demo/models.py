"""The demo's digit classifiers and how they are trained: a standard one and a PGD-trained one.

Training is seeded and takes seconds on a CPU, so the demo trains its models instead of shipping weights.
The test suite uses the same code for its fixtures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

DATA_FILE = Path(__file__).with_name("digits.npz")
HELD_OUT = 297


class DigitsCNN(nn.Module):
    """A small convolutional classifier for 8x8 digits (about 35,000 parameters)."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels * 2, 3, padding=1, stride=2),
            nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(channels * 2 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def digits_cnn() -> DigitsCNN:
    """Factory for ``gate check --model gate.demo.models:digits_cnn``."""
    return DigitsCNN()


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as float32 ``[N, 1, 8, 8]`` in [0, 1], with int64 labels."""
    with np.load(DATA_FILE) as archive:
        x = (archive["pixels"].astype(np.float32) / 16.0)[:, None, :, :]
        y = archive["labels"].astype(np.int64)
    return x, y


def split(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """A fixed shuffle: the last ``HELD_OUT`` images are held out for evaluation."""
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[:-HELD_OUT], order[-HELD_OUT:]
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}


def pgd_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int) -> torch.Tensor:
    """L-inf PGD for adversarial training (Madry et al. 2018); gate's own attacks evaluate, this trains."""
    step = 2.5 * eps / steps
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + step * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def train(
    make_model: type[nn.Module] | object,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 15,
    adversarial_eps: float = 0.0,
    noise_sigma: float = 0.0,
    seed: int = 0,
) -> nn.Module:
    """Train ``make_model()`` with Adam; with ``adversarial_eps`` > 0 on PGD-7 examples (adversarial
    training); with ``noise_sigma`` > 0 on inputs with Gaussian noise of that size, unclipped (Cohen et
    al. 2019's training for randomized smoothing)."""
    torch.manual_seed(seed)
    model: nn.Module = make_model()  # type: ignore[operator]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), 64):
            batch = order[start : start + 64]
            xb, yb = xt[batch], yt[batch]
            if adversarial_eps > 0:
                model.eval()
                xb = pgd_examples(model, xb, yb, adversarial_eps, steps=7)
            if noise_sigma > 0:
                xb = xb + noise_sigma * torch.randn(xb.shape, generator=generator)
            model.train()
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    return model.eval()
