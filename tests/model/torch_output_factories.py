"""Factories whose forward returns a tuple, a dict or a ModelOutput-like object (``test_torch_outputs``)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ClassifierOutput:
    """Stands in for a Hugging Face ``ModelOutput``: logits beside other fields, some of them None."""

    logits: torch.Tensor
    hidden_states: torch.Tensor | None = None
    loss: torch.Tensor | None = None


class KeyedOutput(OrderedDict):
    """Stands in for a ``ModelOutput`` seen as the OrderedDict it subclasses."""


class TwoHeads(nn.Module):
    """An embedding [N, 16] and logits [N, 3] from an 8x8 input, returned in the shape ``style`` names."""

    def __init__(self, style: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh())
        self.head = nn.Linear(16, 3)
        self.style = style

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.body(x)
        return self.head(embedding), embedding

    def forward(self, x: torch.Tensor) -> object:  # what it returns is what the tests vary
        logits, embedding = self.parts(x)
        if self.style == "tensor":
            return logits
        if self.style == "tuple":
            return logits, embedding
        if self.style == "tuple_embedding_first":
            return embedding, logits
        if self.style == "dict_logits":
            return {"embedding": embedding, "logits": logits}
        if self.style == "dict_scores":
            return {"scores": logits, "name": "not a tensor"}
        if self.style == "dict_two":
            return {"scores": logits, "embedding": embedding}
        if self.style == "keyed":
            return KeyedOutput(logits=logits, hidden_states=embedding)
        return ClassifierOutput(logits=logits, hidden_states=embedding)


def make(style: str) -> nn.Module:
    return TwoHeads(style).eval()


def tensor_model() -> nn.Module:
    return make("tensor")


def tuple_model() -> nn.Module:
    return make("tuple")


def tuple_embedding_first() -> nn.Module:
    return make("tuple_embedding_first")


def dict_with_logits() -> nn.Module:
    return make("dict_logits")


def dict_without_logits() -> nn.Module:
    return make("dict_scores")


def dict_of_two() -> nn.Module:
    return make("dict_two")


def keyed_output() -> nn.Module:
    return make("keyed")


def dataclass_output() -> nn.Module:
    return make("dataclass")


def tiny_vit() -> nn.Module:
    """A randomly initialised Hugging Face ViT for 1x16x16 inputs and 3 classes (needs transformers)."""
    from torchvision_shim import import_torchvision_if_installed

    import_torchvision_if_installed()  # transformers imports an installed torchvision
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=16,
        patch_size=8,
        num_channels=1,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
    )
    return ViTForImageClassification(config).eval()
