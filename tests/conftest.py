"""Shared fixtures: the real digits images from scikit-learn and tiny models trained on them in seconds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

DIGITS_SHAPE = (1, 8, 8)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 digits scaled to [0, 1] as float32 ``[N, 1, 8, 8]``, with int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    return x, y


class DigitsCNN(nn.Module):
    """A small convolutional classifier for 8x8 digits (a few thousand parameters)."""

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


class DigitsMLP(nn.Module):
    """A two-layer perceptron on flattened digits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _pgd_linf(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int) -> torch.Tensor:
    """A plain PGD used only to make adversarially trained fixtures (not the attack under test)."""
    alpha = 2.5 * eps / steps
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)
    return x_adv.detach()


def train_digits_model(
    make_model: Callable[[], nn.Module],
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 30,
    adversarial_eps: float = 0.0,
    seed: int = 0,
) -> nn.Module:
    """Train ``make_model()`` on digits; with ``adversarial_eps`` > 0 train on PGD examples (Madry et al.)."""
    torch.manual_seed(seed)
    model = make_model()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), 64):
            idx = order[start : start + 64]
            xb, yb = xt[idx], yt[idx]
            if adversarial_eps > 0:
                model.eval()
                xb = _pgd_linf(model, xb, yb, adversarial_eps, steps=7)
            model.train()
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return load_digits_arrays()


@pytest.fixture(scope="session")
def digits_split(digits: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """A fixed train/test split: the last 297 images are held out."""
    x, y = digits
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    train, test = order[:1500], order[1500:]
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}


@pytest.fixture(scope="session")
def digits_cnn(digits_split: dict[str, np.ndarray]) -> nn.Module:
    """A standard (non-robust) CNN, about 97% accurate on the held-out digits."""
    return train_digits_model(DigitsCNN, digits_split["x_train"], digits_split["y_train"], epochs=15)


@pytest.fixture(scope="session")
def digits_mlp(digits_split: dict[str, np.ndarray]) -> nn.Module:
    return train_digits_model(DigitsMLP, digits_split["x_train"], digits_split["y_train"], epochs=30)


@pytest.fixture(scope="session")
def robust_digits_cnn(digits_split: dict[str, np.ndarray]) -> nn.Module:
    """A PGD-trained CNN (eps = 0.2): keeps much of its accuracy under attacks where the standard one fails."""
    return train_digits_model(
        DigitsCNN, digits_split["x_train"], digits_split["y_train"], epochs=15, adversarial_eps=0.2
    )


@pytest.fixture()
def digits_npz(tmp_path: Path, digits_split: dict[str, np.ndarray]) -> Path:
    """The held-out digits as a gate data file."""
    path = tmp_path / "digits.npz"
    np.savez(path, x=digits_split["x_test"], y=digits_split["y_test"])
    return path


@pytest.fixture(scope="session")
def digits_cnn_onnx(tmp_path_factory: pytest.TempPathFactory, digits_cnn: nn.Module) -> Path:
    """The standard digits CNN exported once to a self-contained ONNX file."""
    from gate.model import export_to_onnx

    path = tmp_path_factory.mktemp("onnx") / "digits_cnn.onnx"
    export_to_onnx(digits_cnn, torch.zeros(1, *DIGITS_SHAPE), path)
    return path


@pytest.fixture(scope="session")
def robust_digits_cnn_onnx(tmp_path_factory: pytest.TempPathFactory, robust_digits_cnn: nn.Module) -> Path:
    from gate.model import export_to_onnx

    path = tmp_path_factory.mktemp("onnx") / "robust_digits_cnn.onnx"
    export_to_onnx(robust_digits_cnn, torch.zeros(1, *DIGITS_SHAPE), path)
    return path


def write_policy(path: Path, body: str) -> Path:
    """Write a policy file from an indented literal (tests read better with inline YAML)."""
    import textwrap

    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path
