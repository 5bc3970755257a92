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


class NaNGradientCNN(nn.Module):
    """Finite logits, NaN input gradients: ``sqrt`` at 0 has an infinite derivative, times a zero one."""

    def __init__(self) -> None:
        super().__init__()
        self.net = DigitsCNN()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zero = torch.sqrt(x.flatten(1).sum(dim=1, keepdim=True) * 0)  # 0 forward, NaN backward
        return self.net(x) * (1 + zero)


def nan_gradient_cnn() -> NaNGradientCNN:
    return NaNGradientCNN()
