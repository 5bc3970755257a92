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


class DetachedInputCNN(nn.Module):
    """Quantises its input to 9 grey levels and detaches it: the logits do not depend on the input in the
    autograd graph at all (``torch.autograd.grad`` on the input raises rather than returning zeros)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = DigitsCNN()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_pre = torch.round(x * 8) / 8
        return self.net(x_pre.detach())


def detached_cnn() -> DetachedInputCNN:
    return DetachedInputCNN()


class ScaledLogitsCNN(nn.Module):
    """The standard CNN with its logits times 1e4 (around 1e5): an honest model whose float32 rounding
    between batch sizes is far above an absolute 1e-3."""

    def __init__(self) -> None:
        super().__init__()
        self.net = DigitsCNN()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * 1e4


def scaled_logits_cnn() -> ScaledLogitsCNN:
    return ScaledLogitsCNN()


class NoisyScaledLogitsCNN(ScaledLogitsCNN):
    """Large logits and a randomised input (x + 0.1·randn): nondeterministic however large the logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x + 0.1 * torch.randn_like(x))


def noisy_scaled_logits_cnn() -> NoisyScaledLogitsCNN:
    return NoisyScaledLogitsCNN()


class BatchStatisticsCNN(ScaledLogitsCNN):
    """Large logits behind a BatchNorm on batch statistics: batch-size dependent however large the logits."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(1, track_running_stats=False, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.norm(x))


def batch_statistics_cnn() -> BatchStatisticsCNN:
    return BatchStatisticsCNN()
