"""Factories for the gradient-masking tests (this folder is put on sys.path by the tests)."""

from __future__ import annotations

import torch
from torch import nn

from gate.demo.models import DigitsCNN


class QuantizedInputCNN(nn.Module):
    """Rounds its input to 17 grey levels first: accurate, but every input gradient is zero (masked)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = DigitsCNN()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * 16) / 16)


def quantized_cnn() -> QuantizedInputCNN:
    return QuantizedInputCNN()
