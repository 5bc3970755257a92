"""Factories that the ``package.module:factory`` tests import by name (the folder is put on sys.path)."""

from __future__ import annotations

import torch
from torch import nn

from gate.demo.models import DigitsCNN  # the same layout as the conftest CNN, so its state dict loads


class BasicBlock(nn.Module):
    """A ResNet basic block: two 3x3 conv-BN pairs and a residual add (with a 1x1 projection when striding)."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels_out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """A ResNet-style classifier for 8x8 inputs: stem, two residual blocks, max-pool, global pooling, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = BasicBlock(8, 8)
        self.pool = nn.MaxPool2d(2)
        self.layer2 = BasicBlock(8, 16, stride=2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layer2(self.pool(self.layer1(self.stem(x)))))


def make_cnn() -> nn.Module:
    return DigitsCNN()


def make_resnet() -> nn.Module:
    """A TinyResNet whose BatchNorm statistics are not the identity, so that folding them is exercised."""
    torch.manual_seed(0)
    model = TinyResNet().train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(32, 1, 8, 8) * 2)
    return model.eval()


class ImageOutput(nn.Module):
    """Returns a feature map instead of logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class NaNLogits(nn.Module):
    """Right shape, but every logit is NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * float("nan")


def make_image_output() -> nn.Module:
    return ImageOutput()


def make_nan_logits() -> nn.Module:
    return NaNLogits()


def make_not_a_module() -> str:
    return "not a module"


def make_failing() -> nn.Module:
    raise RuntimeError("checkpoint server unreachable")


NOT_CALLABLE = 42


class TinyTransformer(nn.Module):
    """Patch embedding, one encoder layer (attention, GELU, LayerNorm), mean pooling: the attention op set."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(1, 16, 2, stride=2)
        self.encoder = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, activation="gelu")
        self.norm = nn.LayerNorm(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        return self.fc(self.norm(self.encoder(tokens)).mean(1))


def make_mobile() -> nn.Module:
    """MobileNet-style: depthwise conv, HardSwish, ReLU6, padded average pooling, ceil-mode max-pooling, upsampling."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.Hardswish(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.ReLU6(),
        nn.AvgPool2d(3, stride=2, padding=1),
        nn.MaxPool2d(3, stride=2, ceil_mode=True),
        nn.Upsample(scale_factor=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    ).eval()


def make_transformer() -> nn.Module:
    torch.manual_seed(0)
    return TinyTransformer().eval()


class Decision(nn.Module):
    """A one-hot decision instead of scores: ``logits > 0`` as a boolean [N, 10]."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) > 0


def make_decision() -> nn.Module:
    return Decision()
