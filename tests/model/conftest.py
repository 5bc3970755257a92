"""Fixtures for the model-intake tests: the factories module on sys.path, weights files, evaluation tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

HERE = Path(__file__).parent


@pytest.fixture()
def factories(monkeypatch: pytest.MonkeyPatch) -> str:
    """Put ``model_factories`` on sys.path; returns the module name to use in ``module:factory`` sources."""
    monkeypatch.syspath_prepend(str(HERE))
    return "model_factories"


@pytest.fixture(scope="session")
def cnn_weights(tmp_path_factory: pytest.TempPathFactory, digits_cnn: nn.Module) -> Path:
    path = tmp_path_factory.mktemp("weights") / "cnn.safetensors"
    save_file({k: v.contiguous() for k, v in digits_cnn.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="session")
def x_test(digits_split: dict[str, np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(digits_split["x_test"])


@pytest.fixture(scope="session")
def y_test(digits_split: dict[str, np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(digits_split["y_test"])
