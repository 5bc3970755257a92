"""Shared fixtures: the real digits images from scikit-learn and tiny models trained on them in seconds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings
from torch import nn

from gate.demo.models import DigitsCNN, load_digits_arrays, pgd_examples
from gate.demo.models import train as _train

DIGITS_SHAPE = (1, 8, 8)

# The suite gives the same result on every run and machine: property tests draw their examples from a
# seed fixed per test (and replay no failures saved by an earlier run). `--hypothesis-profile=explore`
# draws new examples each run, the way to hunt for new failures.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile("deterministic")

__all__ = [
    "DigitsCNN",
    "DigitsMLP",
    "load_digits_arrays",
    "pgd_examples",
    "train_digits_model",
    "write_policy",
]


class DigitsMLP(nn.Module):
    """A two-layer perceptron on flattened digits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_digits_model(
    make_model: Callable[[], nn.Module],
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int = 30,
    adversarial_eps: float = 0.0,
    seed: int = 0,
) -> nn.Module:
    """Train ``make_model()`` on digits (the demo's training code); PGD training when ``adversarial_eps`` > 0."""
    return _train(make_model, x, y, epochs=epochs, adversarial_eps=adversarial_eps, seed=seed)


@pytest.fixture(autouse=True)
def _state_outside_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """gate keeps resume secrets under $XDG_STATE_HOME: the suite writes them to a temporary folder,
    never into the home folder of whoever runs it."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-state"))


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

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path
