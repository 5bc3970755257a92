"""Fixtures for the certification tests: a digits CNN trained with Gaussian noise augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gate.demo.models import DigitsCNN

TRAIN_SIGMA = 0.25
"""The noise level the CNN is trained and certified at (in the [0, 1] input range)."""


def train_noisy_digits_cnn(
    x: np.ndarray, y: np.ndarray, *, sigma: float, epochs: int, seed: int = 0
) -> nn.Module:
    """Cohen et al.'s training: every batch sees fresh ``N(0, sigma^2)`` noise, so the base classifier is
    accurate under the noise it is smoothed with (a standard CNN mostly abstains at this sigma)."""
    torch.manual_seed(seed)
    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), 64):
            batch = order[start : start + 64]
            noisy = xt[batch] + sigma * torch.randn(xt[batch].shape, generator=generator)
            model.train()
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(noisy), yt[batch]).backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="session")
def noisy_digits_cnn(digits_split: dict[str, np.ndarray]) -> nn.Module:
    """About 97% accurate on the held-out digits, and certifiable at sigma = 0.25."""
    return train_noisy_digits_cnn(
        digits_split["x_train"], digits_split["y_train"], sigma=TRAIN_SIGMA, epochs=10
    )


@pytest.fixture(scope="session")
def held_out(digits_split: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(digits_split["x_test"]), torch.from_numpy(digits_split["y_test"])
